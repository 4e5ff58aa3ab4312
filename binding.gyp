{
  "targets": [
    {
      "target_name": "serverlessos",
      "sources": [
        "native/core/addon.cc",
        "native/core/common.cc",
        "native/core/fd_events.cc",
        "native/core/fd_watch.cc",
        "native/core/offthread.cc",
        "native/core/peer_cred.cc",
        "native/core/pidfd_getfd.cc",
        "native/uffd/mapping.cc",
        "native/uffd/uffd.cc",
        "native/uffd/page_source.cc",
        "native/uffd/engine.cc",
        "native/uffd/touch.cc",
        "native/memory/dirty_scan.cc",
        "native/memory/zap.cc",
        "native/memory/pager.cc",
        "native/memory/pager_wrap.cc",
        "native/rdma/lib.cc",
        "native/rdma/verbs.cc",
        "native/rdma/context.cc",
        "native/rdma/pd.cc",
        "native/rdma/cq.cc",
        "native/rdma/ah.cc",
        "native/rdma/srq.cc",
        "native/rdma/qp.cc",
        "native/rdma/work_request.cc",
        "native/rdma/prepared.cc",
        "native/rdma/cm.cc",
        "native/rdma/keys.cc",
        "native/criu/seqpacket.cc",
        "native/memory/replica_set.cc",
        "native/memory/workload.cc",
        "native/memory/rdma_link.cc",
        "native/memory/rdma_export.cc",
        "native/memory/rdma_wrap.cc",
        "native/memory/crypto.cc",
        "native/memory/tls.cc",
        "native/memory/store.cc",
        "native/memory/frame.cc",
        "native/memory/server.cc",
        "native/memory/client.cc",
        "native/memory/wrap.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lpthread", "-ldl"]
    },
    {
      "target_name": "sos_run_shim",
      "type": "shared_library",
      "product_prefix": "",
      "sources": ["native/memory/run_shim.c"],
      "cflags": ["-O2", "-fPIC", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      "target_name": "criu_hwbp_probe",
      "type": "executable",
      "sources": ["native/criu/hwbp_probe.c"],
      "cflags": ["-O0", "-Wall"]
    }
  ]
}
