// RDMA verbs objects for JavaScript, in pyverbs' reference tree: each object
// holds its parents; closing a parent closes its children first (a QP is a
// child of its PD and of its CQs, an MR of its PD). Close is idempotent.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "core/common.h"
#include "rdma/lib.h"
#include "uffd/mapping.h"

namespace sos {

// A node of the tree. Its JS wrapper owns it; parents keep raw pointers to
// their live children and children keep JS references to their parents.
class VerbsNode : public Closable {
 public:
  explicit VerbsNode(napi_env env) : env_(env) {}
  ~VerbsNode() override = default;
  bool closed() const { return closed_; }
  void Adopt(VerbsNode* child) {
    children_.push_back(child);
    child->owners_.push_back(this);
  }
  // Close children (newest first), then this node's verbs object.
  void CloseTree();
  void CloseForTeardown() override { CloseTree(); }
  int CloseRank() const override { return rank_; }

 protected:
  virtual int Destroy() = 0;  // 0 or errno
  // Destroy a handle once: fn(h) when set (its result), then h = nullptr.
  template <typename H, typename F>
  static int Release(H*& h, F fn) {
    int r = h ? fn(h) : 0;
    h = nullptr;
    return r;
  }
  std::vector<Napi::ObjectReference> parents_;
  int rank_ = 5;
  napi_env env_;
  int destroyErr_ = 0;

 private:
  bool closed_ = false;
  std::vector<VerbsNode*> children_;
  std::vector<VerbsNode*> owners_;
};

// The JS side of a node: type tag, close()/isClosed(), the live check and
// the parent links every wrapper class shares. T names itself with kTag,
// kName (for argument errors) and kWhat (for "... is closed"); a class whose
// close() reports a failed destroy names the call in DestroyCall().
template <typename T>
class VerbsWrap : public Napi::ObjectWrap<T>, public VerbsNode {
 public:
  VerbsWrap(const Napi::CallbackInfo& info, int rank) : Napi::ObjectWrap<T>(info), VerbsNode(info.Env()) {
    info.This().template As<Napi::Object>().TypeTag(&T::kTag);
    rank_ = rank;
  }
  Napi::Object JsObject() { return this->Value(); }
  // Throws ERR_CLOSED when closed.
  bool Live(Napi::Env env) {
    if (!closed()) return true;
    ThrowState(env, "ERR_CLOSED", std::string(T::kWhat) + " is closed");
    return false;
  }

 protected:
  using Props = std::vector<typename Napi::ObjectWrap<T>::PropertyDescriptor>;
  // The class with its own methods plus close() and isClosed().
  static Napi::Function Define(Napi::Env env, const char* name, Props props) {
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("close", &VerbsWrap::Close));
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("isClosed", &VerbsWrap::IsClosed));
    return Napi::ObjectWrap<T>::DefineClass(env, name, props);
  }
  virtual const char* DestroyCall() const { return nullptr; }
  // A failed constructor: nothing was created, the node counts as closed.
  void Dead() { CloseTree(); }
  // jsParent (the wrapper of parent) stays referenced while this node lives;
  // closing parent closes this node first.
  void Hold(const Napi::Value& jsParent, VerbsNode* parent) {
    parents_.push_back(Napi::Persistent(jsParent.As<Napi::Object>()));
    if (parent) parent->Adopt(this);
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    if (destroyErr_ && DestroyCall()) ThrowSys(info.Env(), DestroyCall(), destroyErr_);
    destroyErr_ = 0;
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
};

// rdma-core's verbs, or nullptr with ERR_NO_RDMA thrown.
const Verbs* RequireVerbs(Napi::Env env);

// The node behind a JS value when it is a live T.
template <typename T>
T* LiveNode(Napi::Env env, const Napi::Value& v, const char* what) {
  T* n = UnwrapTagged<T>(v, &T::kTag);
  if (!n) {
    ThrowType(env, std::string(what) + " must be a " + T::kName);
    return nullptr;
  }
  if (n->closed()) {
    ThrowState(env, "ERR_CLOSED", std::string(what) + " (" + T::kName + ") is closed");
    return nullptr;
  }
  return n;
}

// A GID in its IPv6 text form, and back (TypeError when v is not one).
std::string GidString(const union ibv_gid& g);
bool ParseGid(Napi::Env env, const Napi::Value& v, union ibv_gid* g);
// o[k] as 32 bits (dflt when absent); on failure a TypeError/RangeError is
// thrown and *ok cleared.
uint32_t U32(Napi::Env env, Napi::Object o, const char* k, uint32_t dflt, bool* ok);

// The binding's rdma object: devices(), status(), the verbs classes, cm.
Napi::Object InitRdma(Napi::Env env, Napi::Object exports);

}  // namespace sos
