// RDMA verbs objects for JavaScript, in pyverbs' reference tree: each object
// holds its parents; closing a parent closes its children first (a QP is a
// child of its PD and of its CQs, an MR of its PD). Close is idempotent.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "common.h"
#include "mapping.h"
#include "rdma_lib.h"

namespace sos {

// A node of the tree. Its JS wrapper owns it; parents keep raw pointers to
// their live children and children keep JS references to their parents.
class VerbsNode : public Closable {
 public:
  explicit VerbsNode(napi_env env) : env_(env) {}
  ~VerbsNode() override = default;
  bool closed() const { return closed_; }
  void Adopt(VerbsNode* child) { children_.push_back(child); child->owners_.push_back(this); }
  // Close children (newest first), then this node's verbs object.
  void CloseTree();
  void CloseForTeardown() override { CloseTree(); }
  int CloseRank() const override { return rank_; }

 protected:
  virtual int Destroy() = 0;  // 0 or errno
  void ReleaseParents() { parents_.clear(); }
  std::vector<Napi::ObjectReference> parents_;
  int rank_ = 5;
  napi_env env_;
  int destroyErr_ = 0;

 private:
  bool closed_ = false;
  std::vector<VerbsNode*> children_;
  std::vector<VerbsNode*> owners_;
};

Napi::Object InitRdma(Napi::Env env, Napi::Object exports);

}  // namespace sos
