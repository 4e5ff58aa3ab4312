{
  "targets": [
    {
      "target_name": "serverlessos",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/mapping.cc",
        "native/uffd.cc",
        "native/page_source.cc",
        "native/engine.cc",
        "native/touch.cc",
        "native/offthread.cc",
        "native/rdma_lib.cc",
        "native/rdma.cc",
        "native/rdma_cm.cc",
        "native/rdma_keys.cc",
        "native/fd_watch.cc",
        "native/seqpacket.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lpthread", "-ldl"]
    },
    {
      "target_name": "uffd_child",
      "type": "executable",
      "sources": ["test/fixtures/uffd-child.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "criu_hwbp_probe",
      "type": "executable",
      "sources": ["native/criu-hwbp-probe.c"],
      "cflags": ["-O0", "-Wall"]
    },
    {
      "target_name": "uffd_floor",
      "type": "executable",
      "sources": ["bench/uffd/floor.c"],
      "cflags": ["-O2", "-pthread", "-Wall"],
      "libraries": ["-lpthread"]
    }
  ]
}
