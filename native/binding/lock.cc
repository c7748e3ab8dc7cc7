#include "binding/errors.h"
#include "binding/modules.h"
#include "core/flock.h"

#include <cerrno>
#include <string>

namespace pagefuse {

// tryLockExclusive(fd) → true when taken, false when another holder has it; throws on anything else.
static Napi::Value TryLockExclusiveJs(const Napi::CallbackInfo& info) {
  int64_t fd = ArgInt(info, 0, "fd");
  if (fd < 0 || fd > 0x7fffffff) ThrowRangeError(info.Env(), "fd must be an open file descriptor, got " + std::to_string(fd));
  int err = TryLockExclusive(static_cast<int>(fd));
  if (err == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
  if (err != 0) ThrowErrno(info.Env(), err, "flock", "flock(LOCK_EX | LOCK_NB)");
  return Napi::Boolean::New(info.Env(), true);
}

void RegisterLock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusiveJs, "tryLockExclusive"));
}

}  // namespace pagefuse
