#include <malloc.h>

#include "binding/errors.h"
#include "binding/modules.h"
#include "core/process.h"

namespace pagefuse {

static Napi::Value SetMergeAny(const Napi::CallbackInfo& info) {
  bool on = ArgBool(info, 0, "on");
  int err = SetMemoryMerge(on);
  if (err != 0) ThrowErrno(info.Env(), err, "prctl", on ? "prctl(PR_SET_MEMORY_MERGE, 1)" : "prctl(PR_SET_MEMORY_MERGE, 0)");
  return info.Env().Undefined();
}

static Napi::Value GetMergeAny(const Napi::CallbackInfo& info) {
  int rc = GetMemoryMerge();
  if (rc < 0) ThrowErrno(info.Env(), -rc, "prctl", "prctl(PR_GET_MEMORY_MERGE)");
  return Napi::Boolean::New(info.Env(), rc == 1);
}

// Hands the free memory of glibc's heaps back to the kernel (malloc_trim): a daemon's heap keeps pages freed
// by Buffers and /proc reads resident until it grows past them again. False where nothing was released or
// the C library has no malloc_trim (musl).
static Napi::Value TrimHeap(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// Pins glibc's mmap threshold at its start value, 128 KiB (mallopt M_MMAP_THRESHOLD), which turns off its
// dynamic raise: each freed mapped block otherwise raises the threshold to the block's size (up to 32 MiB),
// and from then on blocks of that size come from the freeing thread's arena, whose top malloc_trim cannot
// hand back while a small block lives above them. A tune soak's arenas grew from 1.2 to 6 MiB that way in
// 10 minutes; pinned, they stayed at 1.1 MiB (scripts/soak-tune.ts). False where mallopt refused or the
// C library has none (musl).
static Napi::Value PinMmapThreshold(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// Every thread of this process under SCHED_BATCH (or SCHED_OTHER again): the tune daemon's threads then
// never preempt ksmd (or a VM's vCPU) on waking. Returns how many threads were set.
static Napi::Value BatchScheduling(const Napi::CallbackInfo& info) {
  bool on = ArgBool(info, 0, "on");
  int rc = SetAllThreadsBatch(on);
  if (rc < 0) ThrowErrno(info.Env(), -rc, "sched_setscheduler", on ? "sched_setscheduler(SCHED_BATCH) of this process's threads" : "sched_setscheduler(SCHED_OTHER) of this process's threads");
  return Napi::Number::New(info.Env(), rc);
}

void RegisterProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("batchScheduling", Napi::Function::New(env, BatchScheduling, "batchScheduling"));
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap, "trimHeap"));
  exports.Set("pinMmapThreshold", Napi::Function::New(env, PinMmapThreshold, "pinMmapThreshold"));
  exports.Set("setMergeAny", Napi::Function::New(env, SetMergeAny, "setMergeAny"));
  exports.Set("getMergeAny", Napi::Function::New(env, GetMergeAny, "getMergeAny"));
}

}  // namespace pagefuse
