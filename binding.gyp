{
  "variables": {
    "xxhash_dir": "<!(node scripts/xxhash-include.cjs)"
  },
  "target_defaults": {
    "cflags!": ["-fno-exceptions", "-O2"],
    "cflags_cc!": ["-fno-exceptions", "-O2", "-std=gnu++17"],
    "cflags": ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc": ["-O3", "-std=c++17", "-fexceptions"]
  },
  "targets": [
    {
      "target_name": "pagefuse",
      "sources": ["<!@(node scripts/native-sources.cjs core binding)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(xxhash_dir)",
        "native"
      ],
      "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      "target_name": "pagefuse-exec",
      "type": "executable",
      "sources": ["native/exec/pagefuse_exec.cc", "native/core/numa.cc", "native/core/process.cc"],
      "include_dirs": ["native"],
      "libraries": ["-ldl"]
    }
  ]
}
