// rdma_cm (librdmacm, loaded at run time like libibverbs): event channels
// polled on the libuv loop and communication ids (listen, resolve, connect,
// accept, reject, disconnect). An id never owns a verbs object: its QP is an
// ordinary QueuePair, moved through INIT/RTR/RTS with the attributes the
// connection manager computes (qpAttr), so the verbs tree stays one tree.
#pragma once
#include <napi.h>
#include <rdma/rdma_cma.h>

#include <string>

namespace sos {

#define SOS_RDMACM_FUNCTIONS(X)                                                                     \
  X(create_event_channel, struct rdma_event_channel*, (void))                                       \
  X(destroy_event_channel, void, (struct rdma_event_channel*))                                      \
  X(create_id, int, (struct rdma_event_channel*, struct rdma_cm_id**, void*, enum rdma_port_space)) \
  X(destroy_id, int, (struct rdma_cm_id*))                                                          \
  X(bind_addr, int, (struct rdma_cm_id*, struct sockaddr*))                                         \
  X(resolve_addr, int, (struct rdma_cm_id*, struct sockaddr*, struct sockaddr*, int))               \
  X(resolve_route, int, (struct rdma_cm_id*, int))                                                  \
  X(connect, int, (struct rdma_cm_id*, struct rdma_conn_param*))                                    \
  X(establish, int, (struct rdma_cm_id*))                                                           \
  X(listen, int, (struct rdma_cm_id*, int))                                                         \
  X(accept, int, (struct rdma_cm_id*, struct rdma_conn_param*))                                     \
  X(reject, int, (struct rdma_cm_id*, const void*, uint8_t))                                        \
  X(disconnect, int, (struct rdma_cm_id*))                                                          \
  X(get_cm_event, int, (struct rdma_event_channel*, struct rdma_cm_event**))                        \
  X(ack_cm_event, int, (struct rdma_cm_event*))                                                     \
  X(event_str, const char*, (enum rdma_cm_event_type))                                              \
  X(init_qp_attr, int, (struct rdma_cm_id*, struct ibv_qp_attr*, int*))                             \
  X(get_src_port, __be16, (struct rdma_cm_id*))                                                     \
  X(get_dst_port, __be16, (struct rdma_cm_id*))

struct Rdmacm {
#define SOS_DECLARE(name, ret, args) ret(*name) args = nullptr;
  SOS_RDMACM_FUNCTIONS(SOS_DECLARE)
#undef SOS_DECLARE
};

// The loaded library, or nullptr with *why saying what is missing.
const Rdmacm* LoadRdmacm(std::string* why);

// Adds RdmaCmChannel and RdmaCmId to the rdma namespace object.
void InitRdmaCm(Napi::Env env, Napi::Object rdma);

}  // namespace sos
