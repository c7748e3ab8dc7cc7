#include "core/numa.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pagefuse {

namespace {

constexpr int kMpolMfMove = 1 << 1;  // MPOL_MF_MOVE
constexpr unsigned kBitsPerLong = sizeof(unsigned long) * 8;
// The largest node id the kernel accepts in a nodemask (MAX_NUMNODES is at most 1 << 10).
constexpr int kMaxNodeId = 1023;

// ---- lists ----

bool ParseInt(const std::string& s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::stoi(s);
  return true;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

// ---- files ----

int ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return errno != 0 ? errno : ENOENT;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return 0;
}

// "Node 0 MemTotal:        5597388 kB" → bytes.
bool MeminfoField(const std::string& meminfo, const char* key, uint64_t* bytes) {
  std::istringstream lines(meminfo);
  std::string line;
  std::string want = std::string(key) + ":";
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w != want) continue;
      unsigned long long kb = 0;
      std::string unit;
      if (!(words >> kb)) return false;
      words >> unit;
      *bytes = unit == "kB" ? kb * 1024 : kb;
      return true;
    }
  }
  return false;
}

// ---- nodemasks ----

std::vector<unsigned long> NodeMask(const std::vector<int>& nodes) {
  int top = nodes.empty() ? 0 : *std::max_element(nodes.begin(), nodes.end());
  std::vector<unsigned long> mask(top / kBitsPerLong + 1, 0);
  for (int n : nodes) mask[n / kBitsPerLong] |= 1UL << (n % kBitsPerLong);
  return mask;
}

// The kernel reads maxnode - 1 bits (libnuma passes size + 1 for the same reason).
unsigned long MaxNode(const std::vector<unsigned long>& mask) { return mask.size() * kBitsPerLong + 1; }

// ---- raw syscalls ----

long SysMbind(void* addr, unsigned long len, int mode, const unsigned long* nodemask, unsigned long maxnode,
              unsigned flags) {
  return syscall(SYS_mbind, addr, len, mode, nodemask, maxnode, flags);
}

long SysSetMempolicy(int mode, const unsigned long* nodemask, unsigned long maxnode) {
  return syscall(SYS_set_mempolicy, mode, nodemask, maxnode);
}

long SysGetMempolicy(int* mode, unsigned long* nodemask, unsigned long maxnode, void* addr, unsigned long flags) {
  return syscall(SYS_get_mempolicy, mode, nodemask, maxnode, addr, flags);
}

long SysMovePages(int pid, unsigned long count, void** pages, const int* nodes, int* status, int flags) {
  return syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
}

int SysfsHostTopology(NumaTopology* out, std::string* failedPath) { return ReadSysfsTopology("/sys", out, failedPath); }

// ---- libnuma ----

// libnuma's struct bitmask, a stable part of its ABI (numa.h is not needed to build).
struct NumaBitmask {
  unsigned long size;
  unsigned long* maskp;
};

struct LibnumaSymbols {
  int (*available)();
  int (*max_node)();
  long long (*node_size64)(int, long long*);
  int (*distance)(int, int);
  NumaBitmask** nodes_ptr;
  NumaBitmask* (*allocate_cpumask)();
  void (*bitmask_free)(NumaBitmask*);
  int (*bitmask_isbitset)(const NumaBitmask*, unsigned int);
  int (*node_to_cpus)(int, NumaBitmask*);
  long (*mbind)(void*, unsigned long, int, const unsigned long*, unsigned long, unsigned);
  long (*set_mempolicy)(int, const unsigned long*, unsigned long);
  long (*get_mempolicy)(int*, unsigned long*, unsigned long, void*, unsigned);
  long (*move_pages)(int, unsigned long, void**, const int*, int*, int);
};

LibnumaSymbols lib;

template <typename T>
bool Load(void* handle, T* slot, const char* name, const char* version) {
  *slot = reinterpret_cast<T>(dlvsym(handle, name, version));
  return *slot != nullptr;
}

// The symbol versions are the ones libnuma 2.0.x exports (objdump -T libnuma.so.1): the 1.1 ABI for
// the old calls and the 1.2 ABI where the bitmask interface replaced nodemask_t.
bool LoadLibnuma() {
  void* h = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return false;
  bool ok = Load(h, &lib.available, "numa_available", "libnuma_1.1") &&
            Load(h, &lib.max_node, "numa_max_node", "libnuma_1.1") &&
            Load(h, &lib.node_size64, "numa_node_size64", "libnuma_1.1") &&
            Load(h, &lib.distance, "numa_distance", "libnuma_1.1") &&
            Load(h, &lib.nodes_ptr, "numa_nodes_ptr", "libnuma_1.2") &&
            Load(h, &lib.allocate_cpumask, "numa_allocate_cpumask", "libnuma_1.2") &&
            Load(h, &lib.bitmask_free, "numa_bitmask_free", "libnuma_1.2") &&
            Load(h, &lib.bitmask_isbitset, "numa_bitmask_isbitset", "libnuma_1.2") &&
            Load(h, &lib.node_to_cpus, "numa_node_to_cpus", "libnuma_1.2") &&
            Load(h, &lib.mbind, "mbind", "libnuma_1.1") &&
            Load(h, &lib.set_mempolicy, "set_mempolicy", "libnuma_1.1") &&
            Load(h, &lib.get_mempolicy, "get_mempolicy", "libnuma_1.1") &&
            Load(h, &lib.move_pages, "move_pages", "libnuma_1.2");
  // numa_available() < 0: no NUMA support in this kernel; the syscalls would fail the same way,
  // but sysfs still describes the host.
  if (!ok || lib.available() < 0) {
    dlclose(h);
    return false;
  }
  return true;  // stays loaded for the life of the process
}

long LibMbind(void* addr, unsigned long len, int mode, const unsigned long* nodemask, unsigned long maxnode,
              unsigned flags) {
  return lib.mbind(addr, len, mode, nodemask, maxnode, flags);
}

long LibGetMempolicy(int* mode, unsigned long* nodemask, unsigned long maxnode, void* addr, unsigned long flags) {
  return lib.get_mempolicy(mode, nodemask, maxnode, addr, static_cast<unsigned>(flags));
}

int LibnumaTopology(NumaTopology* out, std::string* failedPath) {
  NumaTopology t;
  int max = lib.max_node();
  for (int id = 0; id <= max; id++) {
    if (!lib.bitmask_isbitset(*lib.nodes_ptr, static_cast<unsigned>(id))) continue;
    NumaNode node;
    node.id = id;
    long long free = 0;
    long long total = lib.node_size64(id, &free);
    if (total < 0) {
      *failedPath = "numa_node_size64(" + std::to_string(id) + ")";
      return errno != 0 ? errno : EIO;
    }
    node.memTotal = static_cast<uint64_t>(total);
    node.memFree = free < 0 ? 0 : static_cast<uint64_t>(free);
    NumaBitmask* cpus = lib.allocate_cpumask();
    if (lib.node_to_cpus(id, cpus) < 0) {
      int err = errno != 0 ? errno : EIO;
      lib.bitmask_free(cpus);
      *failedPath = "numa_node_to_cpus(" + std::to_string(id) + ")";
      return err;
    }
    for (unsigned cpu = 0; cpu < cpus->size; cpu++) {
      if (lib.bitmask_isbitset(cpus, cpu)) node.cpus.push_back(static_cast<int>(cpu));
    }
    lib.bitmask_free(cpus);
    t.nodes.push_back(std::move(node));
  }
  for (const NumaNode& a : t.nodes) {
    std::vector<int> row;
    for (const NumaNode& b : t.nodes) row.push_back(lib.distance(a.id, b.id));
    t.distances.push_back(std::move(row));
  }
  *out = std::move(t);
  return 0;
}

const NumaApi kSyscalls = {"syscalls",       SysMbind,     SysSetMempolicy, SysGetMempolicy,
                           SysMovePages,     SysfsHostTopology};

}  // namespace

const NumaNode* NumaTopology::Find(int id) const {
  for (const NumaNode& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

bool ParseIdList(const std::string& text, std::vector<int>* out) {
  std::vector<int> ids;
  std::string s = Trim(text);
  if (!s.empty()) {
    std::istringstream parts(s);
    std::string part;
    while (std::getline(parts, part, ',')) {
      size_t dash = part.find('-');
      int lo = 0;
      int hi = 0;
      if (dash == std::string::npos) {
        if (!ParseInt(part, &lo)) return false;
        hi = lo;
      } else if (!ParseInt(part.substr(0, dash), &lo) || !ParseInt(part.substr(dash + 1), &hi) || hi < lo) {
        return false;
      }
      if (hi - lo > 1 << 20) return false;
      for (int i = lo; i <= hi; i++) ids.push_back(i);
    }
    if (s.back() == ',') return false;
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  *out = std::move(ids);
  return true;
}

std::string FormatIdList(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) j++;
    if (!s.empty()) s += ',';
    s += std::to_string(ids[i]);
    if (j > i) s += '-' + std::to_string(ids[j]);
    i = j + 1;
  }
  return s;
}

int ReadSysfsTopology(const std::string& sysfsRoot, NumaTopology* out, std::string* failedPath) {
  std::string base = sysfsRoot + "/devices/system/node";
  DIR* dir = opendir(base.c_str());
  if (dir == nullptr) {
    *failedPath = base;
    return errno;
  }
  std::vector<int> ids;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    int id = 0;
    if (name.compare(0, 4, "node") == 0 && ParseInt(name.substr(4), &id)) ids.push_back(id);
  }
  closedir(dir);
  std::sort(ids.begin(), ids.end());

  // Each distance file lists one column per online node, in id order.
  std::vector<int> columns = ids;
  std::string text;
  if (ReadFile(base + "/online", &text) == 0 && !ParseIdList(text, &columns)) {
    *failedPath = base + "/online";
    return EINVAL;
  }

  NumaTopology t;
  std::vector<std::vector<int>> rows;
  for (int id : ids) {
    std::string dirPath = base + "/node" + std::to_string(id);
    NumaNode node;
    node.id = id;
    std::string path = dirPath + "/cpulist";
    int err = ReadFile(path, &text);
    if (err == 0 && !ParseIdList(text, &node.cpus)) err = EINVAL;
    if (err == 0) {
      path = dirPath + "/meminfo";
      err = ReadFile(path, &text);
      if (err == 0 && !(MeminfoField(text, "MemTotal", &node.memTotal) && MeminfoField(text, "MemFree", &node.memFree))) {
        err = EINVAL;
      }
    }
    std::vector<int> row;
    if (err == 0) {
      path = dirPath + "/distance";
      err = ReadFile(path, &text);
      std::istringstream words(text);
      int d = 0;
      while (err == 0 && words >> d) row.push_back(d);
      if (err == 0 && row.size() != columns.size()) err = EINVAL;
    }
    if (err != 0) {
      *failedPath = path;
      return err;
    }
    t.nodes.push_back(std::move(node));
    rows.push_back(std::move(row));
  }
  for (const std::vector<int>& row : rows) {
    std::vector<int> out_row;
    for (int id : ids) {
      size_t col = std::find(columns.begin(), columns.end(), id) - columns.begin();
      out_row.push_back(col < row.size() ? row[col] : 0);
    }
    t.distances.push_back(std::move(out_row));
  }
  *out = std::move(t);
  return 0;
}

std::string CheckNodes(const NumaTopology& topology, const std::vector<int>& nodes, bool needMemory, bool needCpus) {
  if (nodes.empty()) return "no node given";
  std::vector<int> have;
  for (const NumaNode& n : topology.nodes) have.push_back(n.id);
  for (int id : nodes) {
    const NumaNode* n = topology.Find(id);
    if (n == nullptr) {
      return "node " + std::to_string(id) + " does not exist: this host has node" + (have.size() == 1 ? " " : "s ") +
             FormatIdList(have);
    }
    if (needMemory && n->memTotal == 0) return "node " + std::to_string(id) + " has no memory";
    if (needCpus && n->cpus.empty()) return "node " + std::to_string(id) + " has no CPUs";
  }
  return "";
}

const NumaApi& NumaApi::Syscalls() { return kSyscalls; }

const NumaApi* NumaApi::Libnuma() {
  static const NumaApi* api = []() -> const NumaApi* {
    if (!LoadLibnuma()) return nullptr;
    static const NumaApi a = {"libnuma",      LibMbind, lib.set_mempolicy, LibGetMempolicy,
                              lib.move_pages, LibnumaTopology};
    return &a;
  }();
  return api;
}

const NumaApi& NumaApi::Default() {
  static const NumaApi& api = []() -> const NumaApi& {
    const char* off = std::getenv("PAGEFUSE_NO_LIBNUMA");
    if (off != nullptr && *off != '\0' && std::strcmp(off, "0") != 0) return kSyscalls;
    const NumaApi* libnuma = Libnuma();
    return libnuma != nullptr ? *libnuma : kSyscalls;
  }();
  return api;
}

int BindRange(const NumaApi& api, void* addr, size_t len, MemPolicyMode mode, const std::vector<int>& nodes, bool move) {
  std::vector<unsigned long> mask = NodeMask(nodes);
  unsigned flags = move ? kMpolMfMove : 0;
  for (;;) {
    if (api.mbind(addr, len, static_cast<int>(mode), mask.data(), MaxNode(mask), flags) == 0) return 0;
    // Migrating pages can be interrupted; mbind is safe to repeat.
    if (errno != EINTR) return errno;
  }
}

int SetProcessPolicy(const NumaApi& api, MemPolicyMode mode, const std::vector<int>& nodes) {
  if (mode == MemPolicyMode::kDefault) return api.set_mempolicy(0, nullptr, 0) == 0 ? 0 : errno;
  std::vector<unsigned long> mask = NodeMask(nodes);
  return api.set_mempolicy(static_cast<int>(mode), mask.data(), MaxNode(mask)) == 0 ? 0 : errno;
}

int GetProcessPolicy(const NumaApi& api, MemPolicyMode* mode, std::vector<int>* nodes) {
  std::vector<unsigned long> mask((kMaxNodeId + 1) / kBitsPerLong, 0);
  int m = 0;
  if (api.get_mempolicy(&m, mask.data(), MaxNode(mask), nullptr, 0) != 0) return errno;
  *mode = static_cast<MemPolicyMode>(m & 0xffff);  // the high bits carry MPOL_F_* mode flags
  nodes->clear();
  for (size_t i = 0; i < mask.size() * kBitsPerLong; i++) {
    if (mask[i / kBitsPerLong] & (1UL << (i % kBitsPerLong))) nodes->push_back(static_cast<int>(i));
  }
  return 0;
}

int BindCpusToNodes(const NumaTopology& topology, const std::vector<int>& nodes) {
  int top = 0;
  for (int id : nodes) {
    const NumaNode* n = topology.Find(id);
    if (n != nullptr && !n->cpus.empty()) top = std::max(top, n->cpus.back());
  }
  size_t count = static_cast<size_t>(top) + 1;
  cpu_set_t* set = CPU_ALLOC(count);
  if (set == nullptr) return ENOMEM;
  size_t size = CPU_ALLOC_SIZE(count);
  CPU_ZERO_S(size, set);
  for (int id : nodes) {
    const NumaNode* n = topology.Find(id);
    if (n == nullptr) continue;
    for (int cpu : n->cpus) CPU_SET_S(static_cast<size_t>(cpu), size, set);
  }
  int rc = sched_setaffinity(0, size, set) == 0 ? 0 : errno;
  CPU_FREE(set);
  return rc;
}

int CountPageNodes(const NumaApi& api, void* addr, size_t len, PageNodeCounts* out) {
  constexpr size_t kChunk = 4096;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t pages = len / page;
  std::vector<void*> addrs(std::min(pages, kChunk));
  std::vector<int> status(addrs.size());
  PageNodeCounts counts;
  for (size_t first = 0; first < pages; first += kChunk) {
    size_t n = std::min(kChunk, pages - first);
    for (size_t i = 0; i < n; i++) addrs[i] = static_cast<char*>(addr) + (first + i) * page;
    if (api.move_pages(0, n, addrs.data(), nullptr, status.data(), 0) != 0) return errno;
    for (size_t i = 0; i < n; i++) {
      int s = status[i];
      if (s >= 0) {
        if (counts.perNode.size() <= static_cast<size_t>(s)) counts.perNode.resize(static_cast<size_t>(s) + 1);
        counts.perNode[static_cast<size_t>(s)]++;
      } else if (s == -ENOENT) {
        counts.notPresent++;
      } else if (s == -EFAULT) {
        counts.zeroPage++;
      } else {
        return -s;
      }
    }
  }
  *out = std::move(counts);
  return 0;
}

}  // namespace pagefuse
