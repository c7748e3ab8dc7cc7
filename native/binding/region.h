// The native half of a JS Region: owns one Mapping and the external ArrayBuffer over it.
#pragma once

#include <napi.h>

#include "core/mapping.h"

namespace pagefuse {

class RegionHandle : public Napi::ObjectWrap<RegionHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RegionHandle(const Napi::CallbackInfo& info);
  ~RegionHandle() override;

  // The mapping behind a handle passed from JS; throws a TypeError for anything else and an
  // Error with code 'ERR_REGION_DISPOSED' for a disposed region.
  static Mapping* MappingOf(Napi::Value value, const char* name);

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value ByteLength(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Advise(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  Mapping* mapping_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

// Reports an unmap to V8's external-memory accounting.
void ReportUnmapped(Napi::Env env, const Mapping* mapping);

}  // namespace pagefuse
