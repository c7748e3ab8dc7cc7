// NUMA topology and memory policy: libnuma when it can be loaded (dlopen + versioned symbols, so
// nothing links against it), otherwise the raw syscalls and /sys/devices/system/node.
// Plain C++: no Node headers. Errors are returned as positive errno values (0 = success).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pagefuse {

// The kernel's memory-policy modes (uapi/linux/mempolicy.h).
enum class MemPolicyMode : int { kDefault = 0, kPreferred = 1, kBind = 2, kInterleave = 3 };

struct NumaNode {
  int id = 0;
  std::vector<int> cpus;
  uint64_t memTotal = 0;  // bytes
  uint64_t memFree = 0;   // bytes
};

struct NumaTopology {
  std::vector<NumaNode> nodes;              // ascending id
  std::vector<std::vector<int>> distances;  // [i][j]: from nodes[i] to nodes[j]

  const NumaNode* Find(int id) const;
};

// Parses a kernel or numactl list such as "0-3,8,10-11" into sorted, distinct ids. Surrounding
// whitespace is ignored and "" is the empty list. Returns false for anything malformed.
bool ParseIdList(const std::string& text, std::vector<int>* out);
// The inverse: "0-3,8,10-11".
std::string FormatIdList(const std::vector<int>& ids);

// Reads the topology from a sysfs tree: `sysfsRoot` is the directory that holds devices/ ("/sys"
// normally, a fake tree in tests). On failure returns errno and names the file in *failedPath.
int ReadSysfsTopology(const std::string& sysfsRoot, NumaTopology* out, std::string* failedPath);

// Why `nodes` cannot be used on this topology ("node 4 does not exist: this host has nodes 0-1",
// "node 2 has no memory"), or "" when they can. An empty list is refused too.
std::string CheckNodes(const NumaTopology& topology, const std::vector<int>& nodes, bool needMemory, bool needCpus);

// The calls pagefuse makes, either through libnuma's wrappers or straight to the kernel. All return
// -1 and set errno on failure, like the syscalls.
struct NumaApi {
  const char* name;  // "libnuma" or "syscalls"
  long (*mbind)(void* addr, unsigned long len, int mode, const unsigned long* nodemask, unsigned long maxnode,
                unsigned flags);
  long (*set_mempolicy)(int mode, const unsigned long* nodemask, unsigned long maxnode);
  long (*get_mempolicy)(int* mode, unsigned long* nodemask, unsigned long maxnode, void* addr, unsigned long flags);
  long (*move_pages)(int pid, unsigned long count, void** pages, const int* nodes, int* status, int flags);
  // The host's topology as this backend sees it; returns 0 or errno.
  int (*read_topology)(NumaTopology* out, std::string* failedPath);

  // libnuma when it loads and PAGEFUSE_NO_LIBNUMA is unset (or "0"), else the syscalls.
  static const NumaApi& Default();
  static const NumaApi& Syscalls();
  // nullptr when libnuma.so.1 is missing, lacks a symbol version we need, or reports NUMA unavailable.
  static const NumaApi* Libnuma();
};

// mbind over [addr, addr+len) with `mode` on `nodes`; `move` migrates pages already present
// (MPOL_MF_MOVE). Returns 0 or errno.
int BindRange(const NumaApi& api, void* addr, size_t len, MemPolicyMode mode, const std::vector<int>& nodes, bool move);

// set_mempolicy for the calling thread (and what it execs). Returns 0 or errno.
int SetProcessPolicy(const NumaApi& api, MemPolicyMode mode, const std::vector<int>& nodes);

// The calling thread's policy: mode and nodes. Returns 0 or errno.
int GetProcessPolicy(const NumaApi& api, MemPolicyMode* mode, std::vector<int>* nodes);

// Restricts the calling thread (and what it execs) to the CPUs of `nodes`. Returns 0 or errno.
int BindCpusToNodes(const NumaTopology& topology, const std::vector<int>& nodes);

// Where the pages of [addr, addr+len) are: move_pages with no target nodes.
struct PageNodeCounts {
  std::vector<uint64_t> perNode;  // index = node id
  uint64_t notPresent = 0;        // -ENOENT: never touched, or swapped out
  uint64_t zeroPage = 0;          // -EFAULT: mapped to the shared zero page (read, never written; docs/kernel.md)
};
// Returns 0 or errno (also the errno of a page status other than the two counted above).
int CountPageNodes(const NumaApi& api, void* addr, size_t len, PageNodeCounts* out);

}  // namespace pagefuse
