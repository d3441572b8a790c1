// The network concept every algorithm (meta_sgd.hpp, reptile.hpp and their learners) is written
// against, so that one algorithm serves every model. A network type Net (Mlp, ConvNet) offers
//
//   net.num_params(), net.input_width() (values per input row), net.output_width(),
//   net.output_activation(), and Net::caches_transposed_weights;
//
// a workspace Workspace<Net, T> (scratch for one pass, grown by reserve(net, rows, with_r_operator),
// its size known beforehand from the static bytes(net, rows, with_r_operator), the size it holds
// from allocated_bytes()); and, found by overload for T = float and double, the passes
//
//   loss_value(net, theta, x, rows, y, loss, ws)                        mean loss
//   loss_and_grad(net, theta, x, rows, y, loss, ws, grad, want_value, theta_t)
//   hvp(net, theta, x, rows, y, loss, v, ws, hv, grad, want_value, forward_done, theta_t)
//   logits(net, ws)                                                     the last forward pass's output
//                                                                       pre-activations (rows x outputs)
//
// hvp with forward_done reuses the forward pass ws holds (the last loss_and_grad's at the same
// theta and rows). When Net::caches_transposed_weights, transpose_weights(net, theta, out) writes
// what the passes accept as theta_t (a speed-up only: null gives the same bits); otherwise theta_t
// is ignored.
#pragma once

namespace metafast {

// Specialised beside each network (mlp_workspace.hpp, convnet.hpp).
template <class Net, class T>
struct WorkspaceOf;

template <class Net, class T>
using Workspace = typename WorkspaceOf<Net, T>::type;

}  // namespace metafast
