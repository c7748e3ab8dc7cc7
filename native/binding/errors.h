// One way to turn failures into JavaScript errors, used by every binding file.
#pragma once

#include <napi.h>

#include <string>

namespace pagefuse {

// An Error shaped like Node's own system errors: message "<what>: <strerror> (<CODE>)",
// err.code ('EACCES'…), err.errno (negative, as in node:fs) and err.syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& what);

[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& what);
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

// Argument readers: they throw a TypeError/RangeError naming `name` when the value does not fit.
size_t ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name);
int64_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name);

}  // namespace pagefuse
