// sketchProcess() / sketchBuffer(): keyed content sketches (core/sketch.h) for the fleet layer.
// Only keyed, sampled values are handed to JS; the per-page hashes never leave the core.
#include <cstring>
#include <memory>
#include <string>

#include "binding/errors.h"
#include "binding/modules.h"
#include "core/sketch.h"

namespace pagefuse {

namespace {

SketchKey KeyArg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[index].As<Napi::Uint8Array>().ElementLength() != 16) {
    ThrowTypeError(env, "key must be a Uint8Array of 16 bytes");
  }
  Napi::Uint8Array k = info[index].As<Napi::Uint8Array>();
  SketchKey key;
  for (int i = 0; i < 8; i++) {
    key.k0 |= static_cast<uint64_t>(k[i]) << (8 * i);
    key.k1 |= static_cast<uint64_t>(k[8 + i]) << (8 * i);
  }
  return key;
}

uint64_t ModulusArg(const Napi::CallbackInfo& info, size_t index) {
  int64_t m = ArgInt(info, index, "modulus");
  if (m < 1 || m > (int64_t{1} << 30) || (m & (m - 1)) != 0) {
    ThrowRangeError(info.Env(), "modulus must be a power of two from 1 to 2^30, got " + std::to_string(m));
  }
  return static_cast<uint64_t>(m);
}

Napi::Object ToJs(Napi::Env env, const SketchResult& r) {
  auto n = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object out = Napi::Object::New(env);
  napi_value values;
  Napi::ArrayBuffer vb = Napi::ArrayBuffer::New(env, r.values.size() * 8);
  if (!r.values.empty()) std::memcpy(vb.Data(), r.values.data(), r.values.size() * 8);
  napi_create_typedarray(env, napi_biguint64_array, r.values.size(), vb, 0, &values);
  out.Set("values", Napi::Value(env, values));
  Napi::Uint32Array counts = Napi::Uint32Array::New(env, r.counts.size());
  for (size_t i = 0; i < r.counts.size(); i++) counts[i] = r.counts[i];
  out.Set("counts", counts);
  out.Set("pages", n(r.pages));
  out.Set("zeroPages", n(r.zeroPages));
  out.Set("thpPages", n(r.thpPages));
  out.Set("absentPages", n(r.absentPages));
  out.Set("zeroMappedPages", n(r.zeroMappedPages));
  out.Set("unreadablePages", n(r.unreadablePages));
  out.Set("flagsKnown", Napi::Boolean::New(env, r.flagsKnown));
  return out;
}

class SketchWorker : public Napi::AsyncWorker {
 public:
  SketchWorker(Napi::Env env, std::string procRoot, pid_t pid, bool mergeableOnly, SketchKey key, uint64_t modulus)
      : Napi::AsyncWorker(env, "pagefuse:sketch"),
        deferred_(env),
        procRoot_(std::move(procRoot)),
        pid_(pid),
        mergeableOnly_(mergeableOnly),
        key_(key),
        modulus_(modulus) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    err_ = SketchProcess(procRoot_, pid_, mergeableOnly_, key_, modulus_, &result_);
    key_ = SketchKey{};
    if (err_ != 0) SetError("sketch failed");
  }
  void OnOK() override { deferred_.Resolve(ToJs(Env(), result_)); }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(ErrnoError(Env(), err_, "sketch", "sketching process " + std::to_string(pid_)).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string procRoot_;
  pid_t pid_;
  bool mergeableOnly_;
  SketchKey key_;
  uint64_t modulus_;
  SketchResult result_;
  int err_ = 0;
};

// sketchProcess(pid, key, modulus, mergeableOnly, procRoot) → Promise<sketch>
Napi::Value SketchProcessJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t pid = ArgInt(info, 0, "pid");
  if (pid < 1 || pid > 0x3fffffff) ThrowRangeError(env, "pid must be a positive process id, got " + std::to_string(pid));
  SketchKey key = KeyArg(info, 1);
  uint64_t modulus = ModulusArg(info, 2);
  bool mergeableOnly = ArgBool(info, 3, "mergeableOnly");
  std::string procRoot = "/proc";
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsString()) ThrowTypeError(env, "procRoot must be a string");
    procRoot = info[4].As<Napi::String>().Utf8Value();
  }
  auto* worker = new SketchWorker(env, procRoot, static_cast<pid_t>(pid), mergeableOnly, key, modulus);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// sketchBuffer(arrayBuffer, key, modulus) → sketch, synchronously (whole pages only).
Napi::Value SketchBufferJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) ThrowTypeError(env, "sketchBuffer needs an ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) ThrowTypeError(env, "sketchBuffer: the ArrayBuffer is detached");
  SketchKey key = KeyArg(info, 1);
  uint64_t modulus = ModulusArg(info, 2);
  SketchResult r;
  std::vector<uint64_t> sampled;
  SketchBytes(static_cast<const unsigned char*>(ab.Data()), ab.ByteLength(), key, modulus, &sampled, &r);
  FinishSketch(&sampled, &r);
  return ToJs(env, r);
}

}  // namespace

void RegisterSketch(Napi::Env env, Napi::Object exports) {
  exports.Set("sketchProcess", Napi::Function::New(env, SketchProcessJs, "sketchProcess"));
  exports.Set("sketchBuffer", Napi::Function::New(env, SketchBufferJs, "sketchBuffer"));
}

}  // namespace pagefuse
