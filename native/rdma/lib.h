// libibverbs, loaded at run time (dlopen) so the addon loads on hosts without
// rdma-core. Types and the inline data path (post/poll/notify through the
// provider's ops) come from verbs.h; exported functions from this table.
#pragma once
#include <infiniband/verbs.h>

#include <string>

namespace sos {

#define SOS_VERBS_FUNCTIONS(X)                                                                   \
  X(get_device_list, struct ibv_device**, (int*))                                                \
  X(free_device_list, void, (struct ibv_device**))                                               \
  X(get_device_name, const char*, (struct ibv_device*))                                          \
  X(get_device_guid, __be64, (struct ibv_device*))                                               \
  X(open_device, struct ibv_context*, (struct ibv_device*))                                      \
  X(close_device, int, (struct ibv_context*))                                                    \
  X(query_device, int, (struct ibv_context*, struct ibv_device_attr*))                           \
  X(query_port, int, (struct ibv_context*, uint8_t, struct ibv_port_attr*))                      \
  X(query_gid, int, (struct ibv_context*, uint8_t, int, union ibv_gid*))                         \
  X(alloc_pd, struct ibv_pd*, (struct ibv_context*))                                             \
  X(dealloc_pd, int, (struct ibv_pd*))                                                           \
  X(reg_mr, struct ibv_mr*, (struct ibv_pd*, void*, size_t, int))                                \
  X(dereg_mr, int, (struct ibv_mr*))                                                             \
  X(create_cq, struct ibv_cq*, (struct ibv_context*, int, void*, struct ibv_comp_channel*, int)) \
  X(destroy_cq, int, (struct ibv_cq*))                                                           \
  X(create_qp, struct ibv_qp*, (struct ibv_pd*, struct ibv_qp_init_attr*))                       \
  X(destroy_qp, int, (struct ibv_qp*))                                                           \
  X(modify_qp, int, (struct ibv_qp*, struct ibv_qp_attr*, int))                                  \
  X(query_qp, int, (struct ibv_qp*, struct ibv_qp_attr*, int, struct ibv_qp_init_attr*))         \
  X(wc_status_str, const char*, (enum ibv_wc_status))                                            \
  X(create_comp_channel, struct ibv_comp_channel*, (struct ibv_context*))                        \
  X(destroy_comp_channel, int, (struct ibv_comp_channel*))                                       \
  X(get_cq_event, int, (struct ibv_comp_channel*, struct ibv_cq**, void**))                      \
  X(ack_cq_events, void, (struct ibv_cq*, unsigned int))                                         \
  X(get_async_event, int, (struct ibv_context*, struct ibv_async_event*))                        \
  X(ack_async_event, void, (struct ibv_async_event*))                                            \
  X(event_type_str, const char*, (enum ibv_event_type))                                          \
  X(create_ah, struct ibv_ah*, (struct ibv_pd*, struct ibv_ah_attr*))                            \
  X(destroy_ah, int, (struct ibv_ah*))                                                           \
  X(create_srq, struct ibv_srq*, (struct ibv_pd*, struct ibv_srq_init_attr*))                    \
  X(destroy_srq, int, (struct ibv_srq*))

struct Verbs {
#define SOS_DECLARE(name, ret, args) ret(*name) args = nullptr;
  SOS_VERBS_FUNCTIONS(SOS_DECLARE)
#undef SOS_DECLARE
};

// The loaded library, or nullptr with *why saying what is missing.
const Verbs* LoadVerbs(std::string* why);

}  // namespace sos
