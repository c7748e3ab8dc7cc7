#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/mapping.h"
#include "core/numa.h"
#include "test/check.h"

using namespace pagefuse;

namespace {

const std::string kFixtures = PAGEFUSE_FIXTURES_DIR;

// check.h prints values with std::to_string; strings are printed as they are.
#define CHECK_STR(a, b)                                                                              \
  do {                                                                                               \
    std::string pf_a = (a);                                                                          \
    std::string pf_b = (b);                                                                          \
    if (pf_a != pf_b) {                                                                              \
      std::fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, pf_a.c_str(), pf_b.c_str()); \
      pagefuse_test::Failures()++;                                                                   \
    }                                                                                                \
  } while (0)

std::vector<int> Ids(const std::string& text) {
  std::vector<int> ids;
  CHECK(ParseIdList(text, &ids));
  return ids;
}

std::vector<const NumaApi*> Apis() {
  std::vector<const NumaApi*> apis{&NumaApi::Syscalls()};
  if (NumaApi::Libnuma() != nullptr) apis.push_back(NumaApi::Libnuma());
  return apis;
}

}  // namespace

TEST(id_lists_parse_as_the_kernel_and_numactl_spell_them) {
  CHECK(Ids("0-3,8,10-11") == (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  CHECK(Ids(" 5\n") == std::vector<int>{5});
  CHECK(Ids("\n").empty());
  CHECK(Ids("3,1,1-2") == (std::vector<int>{1, 2, 3}));
  std::vector<int> out{42};
  for (const char* bad : {"3-1", "a", "1,,2", "1,", "-1", "1-", "0x1", "1 2", "99999999999"}) {
    CHECK(!ParseIdList(bad, &out));
  }
  CHECK(out == std::vector<int>{42});  // untouched on failure
  CHECK_STR(FormatIdList({0, 1, 2, 3, 8, 10, 11}), std::string("0-3,8,10-11"));
  CHECK_STR(FormatIdList({}), std::string(""));
  CHECK_STR(FormatIdList({7}), std::string("7"));
}

TEST(two_node_tree_gives_cpus_memory_and_distances) {
  NumaTopology t;
  std::string failed;
  CHECK_EQ(ReadSysfsTopology(kFixtures + "/sysfs-2node", &t, &failed), 0);
  CHECK_EQ(t.nodes.size(), size_t{2});
  if (t.nodes.size() != 2) return;
  CHECK_EQ(t.nodes[0].id, 0);
  CHECK(t.nodes[0].cpus == (std::vector<int>{0, 1, 2, 3}));
  CHECK(t.nodes[1].cpus == (std::vector<int>{4, 5, 6, 7}));
  CHECK_EQ(t.nodes[0].memTotal, uint64_t{8388608} * 1024);
  CHECK_EQ(t.nodes[1].memFree, uint64_t{7340032} * 1024);
  CHECK(t.distances == (std::vector<std::vector<int>>{{10, 21}, {21, 10}}));
}

TEST(four_node_tree_with_a_gap_in_ids_maps_distance_columns_by_online_order) {
  NumaTopology t;
  std::string failed;
  CHECK_EQ(ReadSysfsTopology(kFixtures + "/sysfs-4node", &t, &failed), 0);
  CHECK_EQ(t.nodes.size(), size_t{4});
  if (t.nodes.size() != 4) return;
  CHECK_EQ(t.nodes[3].id, 4);
  CHECK(t.nodes[2].cpus.empty());
  CHECK_EQ(t.nodes[3].memTotal, uint64_t{0});
  CHECK(t.distances[2] == (std::vector<int>{32, 32, 10, 16}));
  CHECK(t.distances[3] == (std::vector<int>{32, 32, 16, 10}));
  CHECK(t.Find(3) == nullptr);
  CHECK_EQ(t.Find(4)->cpus.size(), size_t{4});
}

TEST(node_checks_name_the_node_and_what_it_lacks) {
  NumaTopology t;
  std::string failed;
  ReadSysfsTopology(kFixtures + "/sysfs-4node", &t, &failed);
  CHECK_STR(CheckNodes(t, {0, 1}, true, true), std::string(""));
  CHECK_STR(CheckNodes(t, {3}, false, false), std::string("node 3 does not exist: this host has nodes 0-2,4"));
  CHECK_STR(CheckNodes(t, {0, 4}, true, false), std::string("node 4 has no memory"));
  CHECK_STR(CheckNodes(t, {2}, false, true), std::string("node 2 has no CPUs"));
  CHECK_STR(CheckNodes(t, {2}, true, false), std::string(""));
  CHECK_STR(CheckNodes(t, {}, true, false), std::string("no node given"));
  NumaTopology one;
  ReadSysfsTopology("/sys", &one, &failed);
  CHECK_STR(CheckNodes(one, {9}, true, false), "node 9 does not exist: this host has node " + FormatIdList({one.nodes[0].id}));
}

TEST(broken_trees_fail_with_errno_and_the_file) {
  NumaTopology t;
  std::string failed;
  CHECK_EQ(ReadSysfsTopology("/nonexistent", &t, &failed), ENOENT);
  CHECK_STR(failed, std::string("/nonexistent/devices/system/node"));

  char dir[] = "/tmp/pagefuse-numa-test-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  std::string root = dir;
  std::string node = root + "/devices/system/node/node0";
  CHECK_EQ(std::system(("mkdir -p " + node).c_str()), 0);
  std::ofstream(node + "/cpulist") << "0-1\n";
  std::ofstream(node + "/meminfo") << "Node 0 MemTotal: 1024 kB\nNode 0 MemFree: 512 kB\n";
  std::ofstream(node + "/distance") << "10 20\n";  // two columns, one node
  CHECK_EQ(ReadSysfsTopology(root, &t, &failed), EINVAL);
  CHECK_STR(failed, node + "/distance");
  std::ofstream(node + "/distance") << "10\n";
  std::ofstream(node + "/meminfo") << "Node 0 MemFree: 512 kB\n";
  CHECK_EQ(ReadSysfsTopology(root, &t, &failed), EINVAL);
  CHECK_STR(failed, node + "/meminfo");
  std::ofstream(node + "/meminfo") << "Node 0 MemTotal: 1024 kB\nNode 0 MemFree: 512 kB\n";
  CHECK_EQ(ReadSysfsTopology(root, &t, &failed), 0);
  CHECK_EQ(t.nodes[0].memTotal, uint64_t{1024} * 1024);
  CHECK_EQ(std::system(("rm -r " + root).c_str()), 0);
}

TEST(libnuma_syscalls_and_sysfs_see_the_same_host) {
  NumaTopology sysfs;
  std::string failed;
  CHECK_EQ(ReadSysfsTopology("/sys", &sysfs, &failed), 0);
  CHECK(!sysfs.nodes.empty());
  for (const NumaApi* api : Apis()) {
    NumaTopology t;
    CHECK_EQ(api->read_topology(&t, &failed), 0);
    CHECK_EQ(t.nodes.size(), sysfs.nodes.size());
    for (size_t i = 0; i < t.nodes.size() && i < sysfs.nodes.size(); i++) {
      CHECK_EQ(t.nodes[i].id, sysfs.nodes[i].id);
      CHECK(t.nodes[i].cpus == sysfs.nodes[i].cpus);
      CHECK_EQ(t.nodes[i].memTotal, sysfs.nodes[i].memTotal);
    }
    CHECK(t.distances == sysfs.distances);
  }
  CHECK(NumaApi::Libnuma() != nullptr);  // installed on this machine: the loader must find it
}

TEST(bound_pages_land_on_the_node_and_page_states_are_told_apart) {
  NumaTopology host;
  std::string failed;
  ReadSysfsTopology("/sys", &host, &failed);
  int node = host.nodes[0].id;
  size_t page = PageSize();
  for (const NumaApi* api : Apis()) {
    int err = 0;
    auto* p = static_cast<volatile char*>(MapAnonymous(16 * page, HugePages::kNever, &err));
    CHECK_EQ(BindRange(*api, const_cast<char*>(p), 16 * page, MemPolicyMode::kBind, {node}, false), 0);
    for (size_t i = 0; i < 8; i++) p[i * page] = 1;       // 8 written
    for (size_t i = 8; i < 12; i++) (void)p[i * page];   // 4 read only: the zero page (or fresh pages, below)
    // A kernel that gives read faults fresh pages (pvm_no_zero_page=1) puts those 4 on the node too.
    const uint64_t readOnZeroPage = pagefuse_test::ReadFaultMapsZeroPage() ? 4 : 0;
    PageNodeCounts counts;
    CHECK_EQ(CountPageNodes(*api, const_cast<char*>(p), 16 * page, &counts), 0);
    CHECK_EQ(counts.perNode.size(), static_cast<size_t>(node) + 1);
    CHECK_EQ(counts.perNode[node], uint64_t{12} - readOnZeroPage);
    CHECK_EQ(counts.zeroPage, readOnZeroPage);
    CHECK_EQ(counts.notPresent, uint64_t{4});
    CHECK_EQ(BindRange(*api, const_cast<char*>(p), 16 * page, MemPolicyMode::kPreferred, {node}, true), 0);
    CHECK_EQ(BindRange(*api, const_cast<char*>(p), 16 * page, MemPolicyMode::kInterleave, {node}, true), 0);
    // The kernel itself refuses a node that does not exist; callers check first for a clear message.
    CHECK_EQ(BindRange(*api, const_cast<char*>(p), 16 * page, MemPolicyMode::kBind, {host.nodes.back().id + 1}, false),
             EINVAL);
    munmap(const_cast<char*>(p), 16 * page);
  }
}

TEST(process_policy_round_trips_and_cpus_follow_the_node) {
  NumaTopology host;
  std::string failed;
  ReadSysfsTopology("/sys", &host, &failed);
  int node = host.nodes[0].id;
  for (const NumaApi* api : Apis()) {
    CHECK_EQ(SetProcessPolicy(*api, MemPolicyMode::kBind, {node}), 0);
    MemPolicyMode mode = MemPolicyMode::kDefault;
    std::vector<int> nodes;
    CHECK_EQ(GetProcessPolicy(*api, &mode, &nodes), 0);
    CHECK(mode == MemPolicyMode::kBind);
    CHECK(nodes == std::vector<int>{node});
    CHECK_EQ(SetProcessPolicy(*api, MemPolicyMode::kDefault, {}), 0);
    CHECK_EQ(GetProcessPolicy(*api, &mode, &nodes), 0);
    CHECK(mode == MemPolicyMode::kDefault);
  }
  cpu_set_t before;
  CHECK_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  CHECK_EQ(BindCpusToNodes(host, {node}), 0);
  cpu_set_t after;
  CHECK_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  CHECK_EQ(static_cast<size_t>(CPU_COUNT(&after)), host.nodes[0].cpus.size());
  for (int cpu : host.nodes[0].cpus) CHECK(CPU_ISSET(cpu, &after));
  sched_setaffinity(0, sizeof before, &before);
}

TEST(default_backend_follows_the_environment_switch) {
  // Default() is fixed at first use; this process never set PAGEFUSE_NO_LIBNUMA before it.
  const char* off = std::getenv("PAGEFUSE_NO_LIBNUMA");
  bool forced = off != nullptr && *off != '\0' && std::strcmp(off, "0") != 0;
  CHECK_STR(std::string(NumaApi::Default().name), std::string(forced ? "syscalls" : "libnuma"));
}

TEST_MAIN()
