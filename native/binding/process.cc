#include <dirent.h>
#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "binding/errors.h"
#include "binding/modules.h"
#include "core/procmem.h"
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

// procPids(dir, previous?) → Float64Array [pid, inode, pid, inode, …] of the numeric entries of a proc
// root, by pid; null when that is exactly `previous` (nothing came, went, or was made anew). The inode is
// the directory entry's (d_ino): procfs gives a process's directory a new one when its pid names a new
// process, so a pid reused between two looks shows, with no file of the process read. (It also changes
// when the kernel drops the cached entry under memory pressure: the caller then checks the start time.)
static Napi::Value ProcPids(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowTypeError(env, "dir must be a string");
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) ThrowErrno(env, errno, "opendir", "opendir " + dir);
  std::vector<std::pair<double, double>> entries;
  errno = 0;
  for (struct dirent* e; (e = readdir(d)) != nullptr; errno = 0) {
    const char* n = e->d_name;
    if (n[0] < '1' || n[0] > '9') continue;
    uint64_t pid = 0;
    size_t i = 0;
    for (; n[i] >= '0' && n[i] <= '9' && i < 10; i++) pid = pid * 10 + static_cast<uint64_t>(n[i] - '0');
    if (n[i] != '\0' || pid > 0x7fffffff) continue;
    entries.emplace_back(static_cast<double>(pid), static_cast<double>(e->d_ino & ((uint64_t{1} << 53) - 1)));
  }
  int err = errno;
  closedir(d);
  if (err != 0) ThrowErrno(env, err, "readdir", "readdir " + dir);
  std::sort(entries.begin(), entries.end());
  if (info.Length() > 1 && info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    Napi::Float64Array prev = info[1].As<Napi::Float64Array>();
    if (prev.ElementLength() == entries.size() * 2) {
      bool same = true;
      for (size_t k = 0; k < entries.size() && same; k++) same = prev[2 * k] == entries[k].first && prev[2 * k + 1] == entries[k].second;
      if (same) return env.Null();
    }
  }
  Napi::Float64Array out = Napi::Float64Array::New(env, entries.size() * 2);
  for (size_t k = 0; k < entries.size(); k++) {
    out[2 * k] = entries[k].first;
    out[2 * k + 1] = entries[k].second;
  }
  return out;
}

// pagemapPresent(fd, start, end, maxPages) → { spans: Float64Array [start, end, …], walkEnd } of an open
// pagemap, or null where there is no PAGEMAP_SCAN (the caller reads every entry).
static Napi::Value PagemapPresentJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = ArgInt(info, 0, "fd");
  int64_t start = ArgInt(info, 1, "start");
  int64_t end = ArgInt(info, 2, "end");
  int64_t maxPages = ArgInt(info, 3, "maxPages");
  if (fd < 0 || fd > 0x7fffffff) ThrowRangeError(env, "fd must be an open file descriptor, got " + std::to_string(fd));
  if (start < 0 || end <= start || maxPages <= 0) ThrowRangeError(env, "need 0 <= start < end and maxPages > 0");
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  uint64_t walkEnd = 0;
  int err = PagemapPresent(static_cast<int>(fd), static_cast<uint64_t>(start), static_cast<uint64_t>(end), static_cast<uint64_t>(maxPages),
                           &spans, &walkEnd);
  if (err == ENOTTY || err == EINVAL || err == EOPNOTSUPP) return env.Null();
  if (err != 0) ThrowErrno(env, err, "ioctl", "ioctl(PAGEMAP_SCAN)");
  Napi::Float64Array out = Napi::Float64Array::New(env, spans.size() * 2);
  for (size_t k = 0; k < spans.size(); k++) {
    out[2 * k] = static_cast<double>(spans[k].first);
    out[2 * k + 1] = static_cast<double>(spans[k].second);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("spans", out);
  result.Set("walkEnd", Napi::Number::New(env, static_cast<double>(walkEnd)));
  return result;
}

void RegisterProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("pagemapPresent", Napi::Function::New(env, PagemapPresentJs, "pagemapPresent"));
  exports.Set("procPids", Napi::Function::New(env, ProcPids, "procPids"));
  exports.Set("batchScheduling", Napi::Function::New(env, BatchScheduling, "batchScheduling"));
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap, "trimHeap"));
  exports.Set("pinMmapThreshold", Napi::Function::New(env, PinMmapThreshold, "pinMmapThreshold"));
  exports.Set("setMergeAny", Napi::Function::New(env, SetMergeAny, "setMergeAny"));
  exports.Set("getMergeAny", Napi::Function::New(env, GetMergeAny, "getMergeAny"));
}

}  // namespace pagefuse
