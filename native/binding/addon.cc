#include <napi.h>

#include "binding/modules.h"

namespace pagefuse {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonData>(new AddonData());
  RegisterRegion(env, exports);
  RegisterProcess(env, exports);
  RegisterZero(env, exports);
  RegisterNuma(env, exports);
  RegisterScan(env, exports);
  RegisterSketch(env, exports);
  RegisterLock(env, exports);
  return exports;
}

}  // namespace pagefuse

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return pagefuse::Init(env, exports); }

NODE_API_MODULE(pagefuse, InitAddon)
