#include <string>

#include "binding/errors.h"
#include "binding/modules.h"
#include "binding/region.h"
#include "core/zero.h"

namespace pagefuse {

namespace {

struct Range {
  uint8_t* addr;
  size_t length;
};

// (region, offset, length): a page-aligned range inside a live region.
Range RangeArgs(const Napi::CallbackInfo& info) {
  Mapping* m = RegionHandle::MappingOf(info[0], "region");
  size_t offset = ArgSize(info, 1, "offset");
  size_t length = ArgSize(info, 2, "length");
  size_t page = PageSize();
  if (offset % page != 0 || length % page != 0 || offset > m->length() || length > m->length() - offset) {
    ThrowRangeError(info.Env(), "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                                    ") is not page-aligned inside the region");
  }
  return {static_cast<uint8_t*>(m->addr()) + offset, length};
}

Napi::Value ReclaimZero(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Range r = RangeArgs(info);
  ZeroReclaim res = ReclaimZeroPages(r.addr, r.length, PageSize());
  if (res.error != 0) ThrowErrno(env, res.error, "madvise", "dropping zero pages (MADV_DONTNEED)");
  Napi::Object out = Napi::Object::New(env);
  out.Set("zeroPages", Napi::Number::New(env, static_cast<double>(res.zero_pages)));
  out.Set("reclaimedPages", Napi::Number::New(env, static_cast<double>(res.reclaimed_pages)));
  return out;
}

Napi::Value Owned(const Napi::CallbackInfo& info) {
  Range r = RangeArgs(info);
  long count = OwnedPages(r.addr, r.length, PageSize());
  if (count < 0) ThrowErrno(info.Env(), static_cast<int>(-count), "pread", "reading /proc/self/pagemap");
  return Napi::Number::New(info.Env(), static_cast<double>(count));
}

}  // namespace

void RegisterZero(Napi::Env env, Napi::Object exports) {
  exports.Set("reclaimZeroPages", Napi::Function::New(env, ReclaimZero, "reclaimZeroPages"));
  exports.Set("ownedPages", Napi::Function::New(env, Owned, "ownedPages"));
}

}  // namespace pagefuse
