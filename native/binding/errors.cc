#include "binding/errors.h"

#include <uv.h>

#include <cmath>
#include <cstring>

namespace pagefuse {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& what) {
  const char* code = uv_err_name(-err);
  std::string message = what + ": " + std::strerror(err) + " (" + code + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& what) {
  throw ErrnoError(env, err, syscall, what);
}

// Bad arguments carry Node's codes, as the TypeScript side's errors do (src/errors.ts).
void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

static double ArgNumber(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (index >= info.Length() || !info[index].IsNumber()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a number");
  }
  return info[index].As<Napi::Number>().DoubleValue();
}

size_t ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name) {
  double v = ArgNumber(info, index, name);
  if (!std::isfinite(v) || v < 0 || v != std::floor(v) || v > 9007199254740991.0) {
    ThrowRangeError(info.Env(), std::string(name) + " must be a non-negative integer");
  }
  return static_cast<size_t>(v);
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name) {
  double v = ArgNumber(info, index, name);
  if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0) {
    ThrowRangeError(info.Env(), std::string(name) + " must be an integer");
  }
  return static_cast<int64_t>(v);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (index >= info.Length() || !info[index].IsBoolean()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a boolean");
  }
  return info[index].As<Napi::Boolean>().Value();
}

}  // namespace pagefuse
