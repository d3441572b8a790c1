// Reptile for one task (Nichol et al. 2018): run SGD or Adam on the task's support set,
// `inner_epochs` passes of consecutive minibatches, from theta to theta~ (docs/math.md, section 3).
// Written once for every network (network.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/backprop.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/convnet.hpp"
#include "metafast/losses.hpp"
#include "metafast/network.hpp"
#include "metafast/optim.hpp"
#include "metafast/rng.hpp"
#include "metafast/scalar_mlp.hpp"

namespace metafast {

struct ReptileConfig {
    Loss loss = Loss::mse;
    OptimizerConfig inner;  // kind, lr, betas, eps of the inner optimizer
    std::size_t inner_epochs = 10;
    std::size_t inner_batch = 10;
    bool reset_optimizer = true;
    bool shuffle = false;
};

// Minibatches in one pass over `rows` support rows.
inline std::size_t batches_per_pass(std::size_t rows, std::size_t batch) {
    return rows / batch + (rows % batch != 0);  // no overflow for any batch size
}

// Shuffles use their own counter-based stream, apart from the tasks' (same key, other seed).
inline std::uint64_t shuffle_seed(std::uint64_t seed) { return mix64(seed) ^ 0x5348554646ULL; }

// Per-thread scratch for one task's inner loop.
template <class Net, class T>
struct ReptileWorkspace {
    Workspace<Net, T> network;
    Buffer<T> grad, params;
    std::vector<std::size_t> order;
    Buffer<T> x_batch, y_batch;
    std::vector<std::int64_t> labels_batch;
    OptimizerState<T> state;
    AdamSchedule<T> adam_schedule;

    // Bytes one thread's workspace takes for tasks of up to `rows` rows (support or query): the
    // network's workspace, the gradient and evaluation's parameters, the shuffled minibatch, the
    // fresh optimizer state, and Adam's kept steps (doubling, up to twice a task's updates).
    static std::size_t bytes(const Net& net, const ReptileConfig& config, std::size_t rows) {
        const std::size_t n = net.num_params(), batch = std::min(config.inner_batch, rows);
        const std::size_t updates = config.inner_epochs * batches_per_pass(rows, config.inner_batch);
        std::size_t bytes = Workspace<Net, T>::bytes(net, rows, false) + 4 * n * sizeof(T);
        if (config.shuffle)
            bytes += rows * sizeof(std::size_t) + batch * (net.input_width() + net.output_width()) * sizeof(T) +
                     batch * sizeof(std::int64_t);
        if (config.inner.kind == Optimizer::adam)  // a carried state's steps go on counting
            bytes += std::min<std::size_t>(config.reset_optimizer ? 2 * updates : std::size_t(AdamSchedule<T>::steps_kept),
                                           std::size_t(AdamSchedule<T>::steps_kept)) * sizeof(AdamStep<T>);
        return bytes;
    }

    std::size_t allocated_bytes() const {
        return network.allocated_bytes() + (grad.capacity() + params.capacity() + x_batch.capacity() + y_batch.capacity()) * sizeof(T) +
               order.capacity() * sizeof(std::size_t) + labels_batch.capacity() * sizeof(std::int64_t) +
               state.allocated_bytes() + adam_schedule.allocated_bytes();
    }
};

// The gradient of the loss on one minibatch; `fused`: by scalar_mlp.hpp's fused form, which an
// MLP of one input, one hidden layer and one output may have (scalar_mlp::applies).
template <class Net, class T>
void minibatch_gradient(const Net& net, Loss loss, bool fused, const T* params, const T* x, std::size_t rows,
                        const Targets<T>& y, Workspace<Net, T>& ws, T* grad) {
    if constexpr (std::is_same_v<Net, Mlp>)
        if (fused) return scalar_mlp::loss_gradient(net, params, x, rows, y.values, ws, grad);
    loss_and_grad(net, params, x, rows, y, loss, ws, grad, false);
}

// Inner optimizer updates first_update .. first_update + updates - 1 of params (in place) on
// (x, y): pass after pass of consecutive minibatches of config.inner_batch rows, reshuffled at
// the start of each pass when config.shuffle (Fisher-Yates with `rng`).
template <class Net, class T>
void inner_loop(const Net& net, const ReptileConfig& config, std::size_t first_update, std::size_t updates, const T* x,
             std::size_t rows, const Targets<T>& y, CounterRng& rng, OptimizerState<T>& state,
             ReptileWorkspace<Net, T>& ws, T* params) {
    const std::size_t n = net.num_params(), in = net.input_width(), out = net.output_width();
    const std::size_t per_pass = batches_per_pass(rows, config.inner_batch);
    const std::size_t batch_rows = std::min(config.inner_batch, rows);
    bool fused = false;
    if constexpr (std::is_same_v<Net, Mlp>) fused = scalar_mlp::applies<T>(net, config.loss);
    grow_exactly(ws.grad, n);
    if (config.shuffle) {  // each buffer checked on its own: a failed resize must not leave one short
        grow_exactly(ws.order, rows);
        grow_exactly(ws.x_batch, batch_rows * in);
        grow_exactly(ws.y_batch, batch_rows * out);
        grow_exactly(ws.labels_batch, batch_rows);
    }
    for (std::size_t u = first_update; u < first_update + updates; ++u) {
        cancellation::throw_if_cancelled();  // only evaluation and adaptation ever request it
        const std::size_t b = u % per_pass;
        const std::size_t first = b * config.inner_batch;
        const std::size_t count = std::min(config.inner_batch, rows - first);
        if (config.shuffle && b == 0) {
            std::iota(ws.order.begin(), ws.order.begin() + rows, std::size_t{0});
            for (std::size_t i = rows; i-- > 1;) std::swap(ws.order[i], ws.order[rng.below(i + 1)]);
        }
        const T* xb = x + first * in;
        Targets<T> yb = y;
        if (y.labels) yb.labels = y.labels + first;
        else yb.values = y.values + first * out;
        if (config.shuffle) {
            for (std::size_t r = 0; r < count; ++r) {
                const std::size_t src = ws.order[first + r];
                std::copy(x + src * in, x + (src + 1) * in, ws.x_batch.data() + r * in);
                if (y.labels) ws.labels_batch[r] = y.labels[src];
                else std::copy(y.values + src * out, y.values + (src + 1) * out, ws.y_batch.data() + r * out);
            }
            xb = ws.x_batch.data();
            if (y.labels) yb.labels = ws.labels_batch.data();
            else yb.values = ws.y_batch.data();
        }
        minibatch_gradient(net, config.loss, fused, params, xb, count, yb, ws.network, ws.grad.data());
        optimizer_update(n, config.inner, ws.grad.data(), state, ws.adam_schedule, params);
    }
}

}  // namespace metafast
