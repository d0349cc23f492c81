#include "engine/graph_rewrite.h"

#include <vector>

#include "engine/check.h"
#include "kernels/elementwise.h"

namespace incept {
namespace {

#if CUDART_VERSION >= 13000
// The node's incoming (or outgoing) edges; false if any carries non-default data.
bool edges(cudaGraphNode_t node, bool incoming, std::vector<cudaGraphNode_t>& nodes) {
  std::size_t n = 0;
  auto get = [&](cudaGraphNode_t* out, cudaGraphEdgeData* data) {
    return incoming ? cudaGraphNodeGetDependencies(node, out, data, &n)
                    : cudaGraphNodeGetDependentNodes(node, out, data, &n);
  };
  CUDA_CHECK(get(nullptr, nullptr));
  nodes.resize(n);
  std::vector<cudaGraphEdgeData> data(n);
  if (n) CUDA_CHECK(get(nodes.data(), data.data()));
  for (const cudaGraphEdgeData& e : data)
    if (e.type != cudaGraphDependencyTypeDefault || e.from_port != 0 || e.to_port != 0) return false;
  return true;
}
void add_edge(cudaGraph_t g, cudaGraphNode_t from, cudaGraphNode_t to) {
  CUDA_CHECK(cudaGraphAddDependencies(g, &from, &to, nullptr, 1));
}
#else  // CUDA 12 (a P100 build): edges carry no data
bool edges(cudaGraphNode_t node, bool incoming, std::vector<cudaGraphNode_t>& nodes) {
  std::size_t n = 0;
  auto get = [&](cudaGraphNode_t* out) {
    return incoming ? cudaGraphNodeGetDependencies(node, out, &n)
                    : cudaGraphNodeGetDependentNodes(node, out, &n);
  };
  CUDA_CHECK(get(nullptr));
  nodes.resize(n);
  if (n) CUDA_CHECK(get(nodes.data()));
  return true;
}
void add_edge(cudaGraph_t g, cudaGraphNode_t from, cudaGraphNode_t to) {
  CUDA_CHECK(cudaGraphAddDependencies(g, &from, &to, 1));
}
#endif

}  // namespace

int memset_nodes_to_kernels(cudaGraph_t graph) {
  std::size_t n = 0;
  CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n) CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  int replaced = 0;
  std::vector<cudaGraphNode_t> deps, dependents;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type{};
    CUDA_CHECK(cudaGraphNodeGetType(node, &type));
    if (type != cudaGraphNodeTypeMemset) continue;
    cudaMemsetParams p{};
    CUDA_CHECK(cudaGraphMemsetNodeGetParams(node, &p));
    if (p.elementSize != 1 && p.elementSize != 2 && p.elementSize != 4) continue;
    if (p.width * p.height * p.elementSize > kMemsetKernelMaxBytes) continue;
    if (!edges(node, true, deps) || !edges(node, false, dependents)) continue;
    const cudaGraphNode_t k = kernels::add_memset_kernel_node(graph, deps.data(), deps.size(), p);
    for (cudaGraphNode_t d : dependents) add_edge(graph, k, d);
    CUDA_CHECK(cudaGraphDestroyNode(node));
    ++replaced;
  }
  return replaced;
}

}  // namespace incept
