#include "binding/region.h"

#include <string>

#include "binding/errors.h"
#include "binding/modules.h"

namespace pagefuse {

namespace {

void FinalizeBuffer(Napi::Env env, void* /*data*/, Mapping* mapping) {
  size_t length = mapping->length();
  if (mapping->Unref()) Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(length));
}

HugePages ParseHuge(Napi::Env env, int64_t code) {
  switch (code) {
    case 0: return HugePages::kDefault;
    case 1: return HugePages::kNever;
    case 2: return HugePages::kAlways;
  }
  ThrowRangeError(env, "hugepages code must be 0, 1 or 2, got " + std::to_string(code));
}

Advice ParseAdvice(Napi::Env env, int64_t code) {
  if (code < 0 || code > static_cast<int64_t>(Advice::kPageout)) {
    ThrowRangeError(env, "advice code out of range: " + std::to_string(code));
  }
  return static_cast<Advice>(code);
}

const char* AdviceName(Advice a) {
  switch (a) {
    case Advice::kMergeable: return "MADV_MERGEABLE";
    case Advice::kUnmergeable: return "MADV_UNMERGEABLE";
    case Advice::kHugepage: return "MADV_HUGEPAGE";
    case Advice::kNohugepage: return "MADV_NOHUGEPAGE";
    case Advice::kDontneed: return "MADV_DONTNEED";
    case Advice::kCold: return "MADV_COLD";
    case Advice::kPageout: return "MADV_PAGEOUT";
  }
  return "?";
}

}  // namespace

void ReportUnmapped(Napi::Env env, const Mapping* mapping) {
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(mapping->length()));
}

Napi::Function RegionHandle::Define(Napi::Env env) {
  return DefineClass(env, "RegionHandle",
                     {
                         InstanceAccessor<&RegionHandle::Buffer>("buffer"),
                         InstanceAccessor<&RegionHandle::ByteLength>("byteLength"),
                         InstanceAccessor<&RegionHandle::Disposed>("disposed"),
                         InstanceMethod<&RegionHandle::Advise>("advise"),
                         InstanceMethod<&RegionHandle::Dispose>("dispose"),
                     });
}

// new RegionHandle(bytes, hugeCode): bytes must already be a positive multiple of the page size.
RegionHandle::RegionHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RegionHandle>(info) {
  Napi::Env env = info.Env();
  size_t bytes = ArgSize(info, 0, "bytes");
  HugePages huge = ParseHuge(env, ArgInt(info, 1, "hugepages"));
  if (bytes == 0 || bytes % PageSize() != 0) {
    ThrowRangeError(env, "bytes must be a positive multiple of the page size, got " + std::to_string(bytes));
  }
  int err = 0;
  void* addr = MapAnonymous(bytes, huge, &err);
  if (addr == nullptr) {
    ThrowErrno(env, err, "mmap", "mapping " + std::to_string(bytes) + " bytes");
  }
  mapping_ = new Mapping(addr, bytes);
  mapping_->Ref();  // the ArrayBuffer's reference, dropped by its finalizer
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, addr, bytes, FinalizeBuffer, mapping_);
  buffer_ = Napi::Persistent(ab);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
}

RegionHandle::~RegionHandle() {
  buffer_.Reset();
  if (mapping_ != nullptr) {
    size_t length = mapping_->length();
    if (mapping_->Unref()) Napi::MemoryManagement::AdjustExternalMemory(Env(), -static_cast<int64_t>(length));
  }
}

Mapping* RegionHandle::MappingOf(Napi::Value value, const char* name) {
  Napi::Env env = value.Env();
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(data->regionConstructor.Value())) {
    ThrowTypeError(env, std::string(name) + " must be a Region");
  }
  RegionHandle* handle = Unwrap(value.As<Napi::Object>());
  if (handle->mapping_->disposed()) {
    Napi::Error e = Napi::Error::New(env, "the region was disposed; allocate a new one");
    e.Set("code", Napi::String::New(env, "ERR_REGION_DISPOSED"));
    throw e;
  }
  return handle->mapping_;
}

Napi::Value RegionHandle::Buffer(const Napi::CallbackInfo& info) { return buffer_.Value(); }

Napi::Value RegionHandle::ByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), mapping_->disposed() ? 0 : static_cast<double>(mapping_->length()));
}

Napi::Value RegionHandle::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), mapping_->disposed());
}

// advise(offset, length, adviceCode): offset and length page-aligned and inside the region.
Napi::Value RegionHandle::Advise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mapping* m = MappingOf(info.This(), "this");
  size_t offset = ArgSize(info, 0, "offset");
  size_t length = ArgSize(info, 1, "length");
  Advice advice = ParseAdvice(env, ArgInt(info, 2, "advice"));
  size_t page = PageSize();
  if (offset % page != 0 || length % page != 0 || length == 0 || offset > m->length() ||
      length > m->length() - offset) {
    ThrowRangeError(env, "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                             ") is not page-aligned inside the region of " + std::to_string(m->length()) + " bytes");
  }
  int err = AdviseRange(static_cast<char*>(m->addr()) + offset, length, advice);
  if (err != 0) ThrowErrno(env, err, "madvise", std::string("madvise(") + AdviceName(advice) + ")");
  return env.Undefined();
}

Napi::Value RegionHandle::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (mapping_->disposed()) return env.Undefined();
  // Detach first, so every view over the memory throws instead of touching an unmapped page.
  Napi::ArrayBuffer ab = buffer_.Value();
  if (!ab.IsDetached()) ab.Detach();
  if (mapping_->Dispose()) ReportUnmapped(env, mapping_);
  return env.Undefined();
}

void RegisterRegion(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = RegionHandle::Define(env);
  env.GetInstanceData<AddonData>()->regionConstructor = Napi::Persistent(ctor);
  exports.Set("RegionHandle", ctor);
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(PageSize())));
}

}  // namespace pagefuse
