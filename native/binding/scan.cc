// scan(): turns JS targets into a ScanJob, runs it on a worker thread (which fans out to the
// addon's hashing pool), reports progress, honours cancel(), and builds the JS result.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "binding/errors.h"
#include "binding/modules.h"
#include "binding/region.h"
#include "core/hash.h"
#include "core/mapping.h"
#include "core/pool.h"
#include "core/read.h"
#include "core/scan.h"

namespace pagefuse {

namespace {

// Tags the externals that carry a previous scan's page checksums, so nothing else passes for one.
const napi_type_tag kStateTag = {0x7061676566757365ull, 0x7363616e73746174ull};

using StatePtr = std::shared_ptr<PageState>;

struct Progress {
  double done;
  double total;
};

struct ScanJob {
  std::vector<ScanTarget> targets;
  ScanOptions options;
  std::shared_ptr<ScanControl> control = std::make_shared<ScanControl>();
  ScanResult result;
  int err = 0;
  std::string what;
};

double Num(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

class ScanWorker : public Napi::AsyncProgressWorker<Progress> {
 public:
  ScanWorker(Napi::Env env, std::unique_ptr<ScanJob> job, Napi::Function onProgress)
      : Napi::AsyncProgressWorker<Progress>(env, "pagefuse:scan"), job_(std::move(job)), deferred_(env) {
    if (!onProgress.IsEmpty()) onProgress_ = Napi::Persistent(onProgress);
  }

  // Keeps the memory of a target alive until the scan is over.
  void HoldMapping(Mapping* m) { mappings_.push_back(m); }
  void HoldBuffer(Napi::Object buffer) { buffers_.push_back(Napi::Persistent(buffer)); }
  Napi::Promise Promise() { return deferred_.Promise(); }
  std::shared_ptr<ScanControl> control() { return job_->control; }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    auto last = std::make_shared<std::atomic<int64_t>>(0);
    job_->control->onProgress = [&progress, last](uint64_t done, uint64_t total) {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
      int64_t prev = last->load(std::memory_order_relaxed);
      if (now - prev < 50 && done < total) return;
      if (!last->compare_exchange_strong(prev, now)) return;
      Progress p{static_cast<double>(done), static_cast<double>(total)};
      progress.Send(&p, 1);
    };
    job_->err = RunScan(job_->targets, job_->options, *job_->control, &job_->result, &job_->what);
    job_->control->onProgress = nullptr;
    if (job_->err != 0) SetError("scan failed");
  }

  void OnProgress(const Progress* data, size_t count) override {
    if (onProgress_.IsEmpty() || count == 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    const Progress& p = data[count - 1];
    onProgress_.Call({Napi::Number::New(env, p.done), Napi::Number::New(env, p.total)});
  }

  void OnOK() override {
    Release();
    deferred_.Resolve(BuildResult(Env()));
  }

  void OnError(const Napi::Error&) override {
    Release();
    Napi::Env env = Env();
    int err = job_->err != 0 ? job_->err : EIO;
    std::string what = "scanning " + (job_->what.empty() ? std::string("memory") : job_->what);
    deferred_.Reject(ErrnoError(env, err, "scan", what).Value());
  }

 private:
  void Release() {
    Napi::Env env = Env();
    for (Mapping* m : mappings_) {
      int64_t length = static_cast<int64_t>(m->length());
      if (m->Unpin()) Napi::MemoryManagement::AdjustExternalMemory(env, -length);
      if (m->Unref()) Napi::MemoryManagement::AdjustExternalMemory(env, -length);
    }
    mappings_.clear();
    for (auto& b : buffers_) b.Reset();
    buffers_.clear();
  }

  Napi::Object BuildResult(Napi::Env env) {
    const ScanResult& r = job_->result;
    auto n = [&](double v) { return Napi::Number::New(env, v); };
    Napi::Object out = Napi::Object::New(env);
    out.Set("distinct", n(r.distinct));
    out.Set("collisions", n(r.collisions));
    out.Set("changedDuringScan", n(r.changedDuringScan));
    out.Set("unconfirmed", n(r.unconfirmed));
    out.Set("indexBytes", n(r.indexBytes));
    out.Set("bytesScanned", n(r.bytesScanned));
    out.Set("seconds", n(r.seconds));
    out.Set("kernel", Napi::String::New(env, r.kernel));
    out.Set("sampledPages", n(r.sampledPages));
    out.Set("sumSquares", n(r.sumSquares));
    out.Set("pageSize", n(static_cast<double>(PageSize())));
    Napi::Array targets = Napi::Array::New(env, r.targets.size());
    for (uint32_t i = 0; i < r.targets.size(); i++) {
      const TargetResult& t = r.targets[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("pages", n(t.pages));
      o.Set("zeroPages", n(t.zeroPages));
      o.Set("thpZeroPages", n(t.thpZeroPages));
      o.Set("volatilePages", n(t.volatilePages));
      o.Set("unreadablePages", n(t.unreadablePages));
      o.Set("absentPages", n(t.absentPages));
      o.Set("zeroMappedPages", n(t.zeroMappedPages));
      o.Set("indexedPages", n(t.indexedPages));
      o.Set("sampledPages", n(t.sampledPages));
      o.Set("distinct", n(t.distinct));
      o.Set("mergingPages", n(t.mergingPages));
      o.Set("sharedWithOthers", n(t.sharedWithOthers));
      o.Set("tailBytes", n(t.tailBytes));
      o.Set("vanished", Napi::Boolean::New(env, t.vanished));
      o.Set("denied", Napi::Boolean::New(env, t.denied));
      o.Set("flagsKnown", Napi::Boolean::New(env, t.flagsKnown));
      o.Set("volatilityChecked", Napi::Boolean::New(env, t.volatilityChecked));
      size_t chunks = t.density.size();
      Napi::Float64Array addr = Napi::Float64Array::New(env, chunks);
      Napi::Uint32Array pages = Napi::Uint32Array::New(env, chunks);
      Napi::Uint32Array dups = Napi::Uint32Array::New(env, chunks);
      Napi::Uint32Array thpPages = Napi::Uint32Array::New(env, chunks);
      Napi::Uint32Array thpZero = Napi::Uint32Array::New(env, chunks);
      Napi::Uint32Array thpDups = Napi::Uint32Array::New(env, chunks);
      for (size_t c = 0; c < chunks; c++) {
        addr[c] = static_cast<double>(t.density[c].address);
        pages[c] = t.density[c].pages;
        dups[c] = t.density[c].duplicatePages;
        thpPages[c] = t.density[c].thpPages;
        thpZero[c] = t.density[c].thpZeroPages;
        thpDups[c] = t.density[c].thpDuplicatePages;
      }
      Napi::Object density = Napi::Object::New(env);
      density.Set("address", addr);
      density.Set("pages", pages);
      density.Set("duplicatePages", dups);
      density.Set("thpPages", thpPages);
      density.Set("thpZeroPages", thpZero);
      density.Set("thpDuplicatePages", thpDups);
      o.Set("density", density);
      if (t.state) {
        // The checksums live as long as the JS result that holds them: their size is reported to V8
        // (AdjustExternalMemory), so its collector weighs them, and taken back when the result is collected.
        // (The targets of one scan share one array of checksums: each reports its own pages of it.)
        const PageState& s = *t.state;
        uint64_t pages = 0;
        for (const PageRun& run : s.runs) pages += run.pages;
        const int64_t bytes = static_cast<int64_t>(sizeof(PageState) + s.runs.size() * sizeof(PageRun) +
                                                   s.runFirst.size() * sizeof(uint64_t) + pages * sizeof(uint32_t));
        auto* holder = new StatePtr(t.state);
        Napi::External<StatePtr> ext = Napi::External<StatePtr>::New(env, holder, [bytes](Napi::Env e, StatePtr* p) {
          delete p;
          Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
        });
        Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
        ext.TypeTag(&kStateTag);
        o.Set("state", ext);
      }
      targets[i] = o;
    }
    out.Set("targets", targets);
    Napi::Array sharing = Napi::Array::New(env, r.sharing.size());
    for (uint32_t i = 0; i < r.sharing.size(); i++) {
      Napi::Array row = Napi::Array::New(env, r.sharing[i].size());
      for (uint32_t j = 0; j < r.sharing[i].size(); j++) row[j] = n(r.sharing[i][j]);
      sharing[i] = row;
    }
    out.Set("sharing", sharing);
    return out;
  }

  std::unique_ptr<ScanJob> job_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference onProgress_;
  std::vector<Mapping*> mappings_;
  std::vector<Napi::ObjectReference> buffers_;
};

ScanMode ParseMode(Napi::Env env, const std::string& mode) {
  if (mode == "exact") return ScanMode::kExact;
  if (mode == "fast") return ScanMode::kFast;
  if (mode == "sampled") return ScanMode::kSampled;
  ThrowRangeError(env, "mode must be 'exact', 'fast' or 'sampled', got '" + mode + "'");
}

// Reads [offset, offset+length) of a byte range of `size` bytes from a target spec.
void Range(Napi::Object spec, uint64_t size, uint64_t* offset, uint64_t* length) {
  double off = Num(spec, "offset", 0);
  double len = Num(spec, "length", static_cast<double>(size) - off);
  if (off < 0 || len < 0 || off + len > static_cast<double>(size) || off != static_cast<uint64_t>(off) ||
      len != static_cast<uint64_t>(len)) {
    ThrowRangeError(spec.Env(), "target range is outside its memory");
  }
  *offset = static_cast<uint64_t>(off);
  *length = static_cast<uint64_t>(len);
}

// startScan(targets, options, onProgress?) → { promise, cancel }
Napi::Value StartScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsObject()) {
    ThrowTypeError(env, "startScan(targets, options, onProgress?) needs an array and an object");
  }
  Napi::Array specs = info[0].As<Napi::Array>();
  Napi::Object opts = info[1].As<Napi::Object>();
  auto job = std::make_unique<ScanJob>();
  Napi::Value mode = opts.Get("mode");
  job->options.mode = ParseMode(env, mode.IsString() ? mode.As<Napi::String>().Utf8Value() : "exact");
  double threads = Num(opts, "threads", DefaultThreads());
  if (threads < 1 || threads > 64 || threads != static_cast<int>(threads)) {
    ThrowRangeError(env, "threads must be a whole number from 1 to 64");
  }
  job->options.threads = static_cast<int>(threads);
  double rate = Num(opts, "sampleRate", 64);
  uint32_t r32 = static_cast<uint32_t>(rate);
  if (rate < 1 || rate > (1u << 30) || rate != r32 || (r32 & (r32 - 1)) != 0) {
    ThrowRangeError(env, "sampleRate must be a power of two from 1 to 2^30");
  }
  job->options.sampleRate = r32;
  double bits = Num(opts, "hashBits", 64);
  if (bits < 1 || bits > 64 || bits != static_cast<int>(bits)) ThrowRangeError(env, "hashBits must be 1 to 64");
  job->options.hashBits = static_cast<int>(bits);
  Napi::Value keep = opts.Get("keepState");
  job->options.keepState = !keep.IsBoolean() || keep.As<Napi::Boolean>().Value();
  Napi::Value sharing = opts.Get("sharing");
  job->options.sharing = !sharing.IsBoolean() || sharing.As<Napi::Boolean>().Value();
  Napi::Value skip = opts.Get("skipMissing");
  job->options.skipMissing = skip.IsBoolean() && skip.As<Napi::Boolean>().Value();
  Napi::Value denied = opts.Get("skipDenied");
  job->options.skipDenied = denied.IsBoolean() && denied.As<Napi::Boolean>().Value();
  Napi::Value root = opts.Get("procRoot");
  if (root.IsString()) job->options.procRoot = root.As<Napi::String>().Utf8Value();

  Napi::Function onProgress;
  if (info.Length() > 2 && info[2].IsFunction()) onProgress = info[2].As<Napi::Function>();

  // Validate every target before pinning anything, so a bad one leaves nothing held.
  struct Pending {
    Mapping* mapping = nullptr;
    Napi::Object buffer;
  };
  std::vector<Pending> pending;
  for (uint32_t i = 0; i < specs.Length(); i++) {
    Napi::Value v = specs[i];
    if (!v.IsObject()) ThrowTypeError(env, "target " + std::to_string(i) + " must be an object");
    Napi::Object spec = v.As<Napi::Object>();
    ScanTarget target;
    Pending hold;
    std::string kind = spec.Get("kind").ToString().Utf8Value();
    if (kind == "region") {
      Mapping* m = RegionHandle::MappingOf(spec.Get("handle"), "target region");
      uint64_t offset = 0, length = 0;
      Range(spec, m->length(), &offset, &length);
      target.data = static_cast<const unsigned char*>(m->addr()) + offset;
      target.length = length;
      hold.mapping = m;
    } else if (kind == "buffer") {
      Napi::Value b = spec.Get("buffer");
      if (!b.IsArrayBuffer()) ThrowTypeError(env, "target " + std::to_string(i) + ": buffer must be an ArrayBuffer");
      Napi::ArrayBuffer ab = b.As<Napi::ArrayBuffer>();
      if (ab.IsDetached()) {
        ThrowTypeError(env, "target " + std::to_string(i) + ": the ArrayBuffer is detached (transferred or its Region disposed)");
      }
      uint64_t offset = 0, length = 0;
      Range(spec, ab.ByteLength(), &offset, &length);
      target.data = static_cast<const unsigned char*>(ab.Data()) + offset;
      target.length = length;
      hold.buffer = ab;
    } else if (kind == "pid") {
      double pid = Num(spec, "pid", -1);
      if (pid < 1 || pid > 4194304 || pid != static_cast<int>(pid)) {
        ThrowRangeError(env, "target " + std::to_string(i) + ": pid must be a whole number from 1 to 4194304");
      }
      target.process = true;
      target.pid = static_cast<pid_t>(pid);
      Napi::Value mo = spec.Get("mergeableOnly");
      target.mergeableOnly = !mo.IsBoolean() || mo.As<Napi::Boolean>().Value();
    } else {
      ThrowTypeError(env, "target " + std::to_string(i) + ": kind must be 'region', 'buffer' or 'pid'");
    }
    Napi::Value prev = spec.Get("previous");
    if (!prev.IsUndefined() && !prev.IsNull()) {
      if (!prev.IsExternal() || !prev.As<Napi::External<StatePtr>>().CheckTypeTag(&kStateTag)) {
        ThrowTypeError(env, "target " + std::to_string(i) + ": previous must be the state of an earlier scan");
      }
      target.previous = *prev.As<Napi::External<StatePtr>>().Data();
    }
    job->targets.push_back(std::move(target));
    pending.push_back(hold);
  }
  auto* worker = new ScanWorker(env, std::move(job), onProgress);
  for (Pending& p : pending) {
    if (p.mapping != nullptr) {
      if (!p.mapping->Pin()) {
        delete worker;
        Napi::Error e = Napi::Error::New(env, "the region was disposed; allocate a new one");
        e.Set("code", Napi::String::New(env, "ERR_REGION_DISPOSED"));
        throw e;
      }
      p.mapping->Ref();
      worker->HoldMapping(p.mapping);
    }
    if (!p.buffer.IsEmpty()) worker->HoldBuffer(p.buffer);
  }
  std::shared_ptr<ScanControl> control = worker->control();
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", worker->Promise());
  handle.Set("cancel", Napi::Function::New(env, [control](const Napi::CallbackInfo& ci) {
               control->cancel.store(true);
               return ci.Env().Undefined();
             }, "cancel"));
  worker->Queue();
  return handle;
}

// readMemory(target, { threads?, streams?, items? }) → Promise<number>: reads a Region's memory or an
// ArrayBuffer once with the widest loads the scan kernels have, on the scan's thread pool: the read
// baseline benches measure scans against. `items`: the threads take 2 MiB items from a shared counter,
// as the scan's do, instead of a fixed share each. Resolves to the sum of the words (53 bits of it).
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, const unsigned char* data, uint64_t length, int threads, int streams, uint64_t itemBytes)
      : Napi::AsyncWorker(env, "pagefuse:read"),
        deferred_(env),
        data_(data),
        length_(length),
        threads_(threads),
        streams_(streams),
        itemBytes_(itemBytes) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Hold(Mapping* m) { mapping_ = m; }
  void Hold(Napi::ArrayBuffer b) { buffer_ = Napi::Persistent(b); }

 protected:
  void Execute() override { sum_ = ReadMemory(Kernels(), data_, length_, threads_, streams_, itemBytes_); }
  void OnOK() override {
    Release();
    deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(sum_ & ((1ull << 53) - 1))));
  }
  void OnError(const Napi::Error& e) override {
    Release();
    deferred_.Reject(e.Value());
  }

 private:
  void Release() {
    if (mapping_ != nullptr) {
      int64_t length = static_cast<int64_t>(mapping_->length());
      if (mapping_->Unpin()) Napi::MemoryManagement::AdjustExternalMemory(Env(), -length);
      if (mapping_->Unref()) Napi::MemoryManagement::AdjustExternalMemory(Env(), -length);
      mapping_ = nullptr;
    }
    buffer_.Reset();
  }

  Napi::Promise::Deferred deferred_;
  const unsigned char* data_;
  uint64_t length_;
  int threads_, streams_;
  uint64_t itemBytes_;
  uint64_t sum_ = 0;
  Mapping* mapping_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

Napi::Value ReadMemoryJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    ThrowTypeError(env, "readMemory(target, options) needs two objects");
  }
  Napi::Object spec = info[0].As<Napi::Object>();
  Napi::Object opts = info[1].As<Napi::Object>();
  double threads = Num(opts, "threads", 1);
  if (threads < 1 || threads > 64 || threads != static_cast<int>(threads)) ThrowRangeError(env, "threads must be a whole number from 1 to 64");
  double streams = Num(opts, "streams", 1);
  if (streams != 1 && streams != 2 && streams != 4 && streams != 8) ThrowRangeError(env, "streams must be 1, 2, 4 or 8");
  Napi::Value itemsOpt = opts.Get("items");
  if (!itemsOpt.IsUndefined() && !itemsOpt.IsBoolean()) ThrowTypeError(env, "items must be a boolean");
  const uint64_t itemBytes = itemsOpt.IsBoolean() && itemsOpt.As<Napi::Boolean>().Value() ? 2ull << 20 : 0;
  std::string kind = spec.Get("kind").ToString().Utf8Value();
  if (kind == "region") {
    Mapping* m = RegionHandle::MappingOf(spec.Get("handle"), "target region");
    if (!m->Pin()) {
      Napi::Error e = Napi::Error::New(env, "the region was disposed; allocate a new one");
      e.Set("code", Napi::String::New(env, "ERR_REGION_DISPOSED"));
      throw e;
    }
    m->Ref();
    auto* worker = new ReadWorker(env, static_cast<const unsigned char*>(m->addr()), m->length(), static_cast<int>(threads),
                                  static_cast<int>(streams), itemBytes);
    worker->Hold(m);
    worker->Queue();
    return worker->Promise();
  }
  if (kind == "buffer") {
    Napi::Value b = spec.Get("buffer");
    if (!b.IsArrayBuffer()) ThrowTypeError(env, "readMemory: buffer must be an ArrayBuffer");
    Napi::ArrayBuffer ab = b.As<Napi::ArrayBuffer>();
    if (ab.IsDetached()) ThrowTypeError(env, "readMemory: the ArrayBuffer is detached");
    auto* worker = new ReadWorker(env, static_cast<const unsigned char*>(ab.Data()), ab.ByteLength(), static_cast<int>(threads),
                                  static_cast<int>(streams), itemBytes);
    worker->Hold(ab);
    worker->Queue();
    return worker->Promise();
  }
  ThrowTypeError(env, "readMemory: kind must be 'region' or 'buffer'");
}

}  // namespace

void RegisterScan(Napi::Env env, Napi::Object exports) {
  exports.Set("startScan", Napi::Function::New(env, StartScan, "startScan"));
  exports.Set("readMemory", Napi::Function::New(env, ReadMemoryJs, "readMemory"));
  exports.Set("hashKernel", Napi::String::New(env, Kernels().name));
  exports.Set("defaultThreads", Napi::Number::New(env, DefaultThreads()));
}

}  // namespace pagefuse
