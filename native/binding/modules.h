// Each binding file registers its functions on the addon's exports.
#pragma once

#include <napi.h>

namespace pagefuse {

// Per-env state (one per main thread or worker thread that loads the addon), freed with the env.
struct AddonData {
  Napi::FunctionReference regionConstructor;
};

void RegisterRegion(Napi::Env env, Napi::Object exports);
void RegisterProcess(Napi::Env env, Napi::Object exports);
void RegisterZero(Napi::Env env, Napi::Object exports);
void RegisterNuma(Napi::Env env, Napi::Object exports);
void RegisterScan(Napi::Env env, Napi::Object exports);
void RegisterSketch(Napi::Env env, Napi::Object exports);
void RegisterLock(Napi::Env env, Napi::Object exports);

}  // namespace pagefuse
