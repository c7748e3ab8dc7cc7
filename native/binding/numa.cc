#include "core/numa.h"

#include <string>
#include <vector>

#include "binding/errors.h"
#include "binding/modules.h"
#include "binding/region.h"
#include "core/mapping.h"

namespace pagefuse {

namespace {

NumaTopology HostTopology(Napi::Env env, const NumaApi& api) {
  NumaTopology t;
  std::string failed;
  int err = api.read_topology(&t, &failed);
  if (err != 0) ThrowErrno(env, err, "open", "reading the NUMA topology (" + failed + ")");
  return t;
}

std::vector<int> ArgNodes(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  if (index >= info.Length() || !info[index].IsArray()) ThrowTypeError(env, "nodes must be an array");
  Napi::Array a = info[index].As<Napi::Array>();
  std::vector<int> nodes;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) ThrowTypeError(env, "nodes must hold numbers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 1023 && d == static_cast<int>(d))) {
      ThrowRangeError(env, "node ids are whole numbers from 0 to 1023, got " + v.ToString().Utf8Value());
    }
    nodes.push_back(static_cast<int>(d));
  }
  return nodes;
}

Napi::Array IntArray(Napi::Env env, const std::vector<int>& values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (uint32_t i = 0; i < values.size(); i++) a.Set(i, Napi::Number::New(env, values[i]));
  return a;
}

// Checks a region sub-range passed as (handle, offset, length): page-aligned, non-empty, inside.
char* RangeStart(const Napi::CallbackInfo& info, size_t* length) {
  Mapping* m = RegionHandle::MappingOf(info[0], "region");
  size_t offset = ArgSize(info, 1, "offset");
  *length = ArgSize(info, 2, "length");
  size_t page = PageSize();
  if (offset % page != 0 || *length % page != 0 || *length == 0 || offset > m->length() ||
      *length > m->length() - offset) {
    ThrowRangeError(info.Env(), "range [" + std::to_string(offset) + ", +" + std::to_string(*length) +
                                    ") is not page-aligned inside the region of " + std::to_string(m->length()) +
                                    " bytes");
  }
  return static_cast<char*>(m->addr()) + offset;
}

// numaTopology(sysfsRoot?: string): libnuma's (or sysfs's) view of the host, or a sysfs tree's.
Napi::Value Topology(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NumaTopology t;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) ThrowTypeError(env, "sysfsRoot must be a string");
    std::string failed;
    int err = ReadSysfsTopology(info[0].As<Napi::String>().Utf8Value(), &t, &failed);
    if (err != 0) ThrowErrno(env, err, "open", "reading the NUMA topology (" + failed + ")");
  } else {
    t = HostTopology(env, NumaApi::Default());
  }
  Napi::Array nodes = Napi::Array::New(env, t.nodes.size());
  for (uint32_t i = 0; i < t.nodes.size(); i++) {
    const NumaNode& n = t.nodes[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", Napi::Number::New(env, n.id));
    o.Set("cpus", IntArray(env, n.cpus));
    o.Set("memTotal", Napi::Number::New(env, static_cast<double>(n.memTotal)));
    o.Set("memFree", Napi::Number::New(env, static_cast<double>(n.memFree)));
    nodes.Set(i, o);
  }
  Napi::Array distances = Napi::Array::New(env, t.distances.size());
  for (uint32_t i = 0; i < t.distances.size(); i++) distances.Set(i, IntArray(env, t.distances[i]));
  Napi::Object result = Napi::Object::New(env);
  result.Set("nodes", nodes);
  result.Set("distances", distances);
  return result;
}

Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), NumaApi::Default().name); }

// numaCheckNodes(nodes, needMemory, needCpus): why the host cannot use them, or "".
Napi::Value CheckHostNodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int> nodes = ArgNodes(info, 0);
  bool needMemory = ArgBool(info, 1, "needMemory");
  bool needCpus = ArgBool(info, 2, "needCpus");
  return Napi::String::New(env, CheckNodes(HostTopology(env, NumaApi::Default()), nodes, needMemory, needCpus));
}

// regionBind(region, offset, length, mode, nodes, move): mbind; the caller checked the nodes.
Napi::Value RegionBind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t length = 0;
  char* start = RangeStart(info, &length);
  int64_t mode = ArgInt(info, 3, "mode");
  if (mode != static_cast<int>(MemPolicyMode::kPreferred) && mode != static_cast<int>(MemPolicyMode::kBind) &&
      mode != static_cast<int>(MemPolicyMode::kInterleave)) {
    ThrowRangeError(env, "mode must be MPOL_PREFERRED, MPOL_BIND or MPOL_INTERLEAVE, got " + std::to_string(mode));
  }
  std::vector<int> nodes = ArgNodes(info, 4);
  if (nodes.empty()) ThrowRangeError(env, "nodes must not be empty");
  bool move = ArgBool(info, 5, "move");
  int err = BindRange(NumaApi::Default(), start, length, static_cast<MemPolicyMode>(mode), nodes, move);
  if (err != 0) ThrowErrno(env, err, "mbind", "mbind to node " + FormatIdList(nodes));
  return env.Undefined();
}

// regionPageNodes(region, offset, length) → { perNode: number[], notPresent, zeroPage }
Napi::Value RegionPageNodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t length = 0;
  char* start = RangeStart(info, &length);
  PageNodeCounts counts;
  int err = CountPageNodes(NumaApi::Default(), start, length, &counts);
  if (err != 0) ThrowErrno(env, err, "move_pages", "move_pages (querying page nodes)");
  Napi::Array perNode = Napi::Array::New(env, counts.perNode.size());
  for (uint32_t i = 0; i < counts.perNode.size(); i++) {
    perNode.Set(i, Napi::Number::New(env, static_cast<double>(counts.perNode[i])));
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("perNode", perNode);
  result.Set("notPresent", Napi::Number::New(env, static_cast<double>(counts.notPresent)));
  result.Set("zeroPage", Napi::Number::New(env, static_cast<double>(counts.zeroPage)));
  return result;
}

}  // namespace

void RegisterNuma(Napi::Env env, Napi::Object exports) {
  exports.Set("numaTopology", Napi::Function::New(env, Topology, "numaTopology"));
  exports.Set("numaBackend", Napi::Function::New(env, Backend, "numaBackend"));
  exports.Set("numaCheckNodes", Napi::Function::New(env, CheckHostNodes, "numaCheckNodes"));
  exports.Set("regionBind", Napi::Function::New(env, RegionBind, "regionBind"));
  exports.Set("regionPageNodes", Napi::Function::New(env, RegionPageNodes, "regionPageNodes"));
}

}  // namespace pagefuse
