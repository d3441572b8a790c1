// A multilayer perceptron's architecture and its flat parameter layout: for each layer,
// W (fan_in x fan_out, row-major) then b (fan_out), b omitted without biases.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "metafast/activations.hpp"

namespace metafast {

class Mlp {
public:
    // Limits that keep every size product far from overflow (and far beyond what fits in memory).
    static constexpr std::size_t max_width_allowed = std::size_t{1} << 24;
    static constexpr std::size_t max_params_allowed = std::size_t{1} << 36;

    Mlp(std::vector<std::size_t> sizes, Activation hidden, Activation output, bool bias)
        : sizes_(std::move(sizes)), hidden_(hidden), output_(output), bias_(bias) {
        if (sizes_.size() < 2)
            throw std::invalid_argument("sizes must list at least an input and an output width, got " +
                                        std::to_string(sizes_.size()) + " entries");
        for (std::size_t s : sizes_)
            if (s == 0 || s > max_width_allowed)
                throw std::invalid_argument("sizes must lie in [1, " + std::to_string(max_width_allowed) + "], got " +
                                            std::to_string(s));
        for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
            weight_offset_.push_back(num_params_);
            num_params_ += sizes_[l] * sizes_[l + 1];  // < 2^48 each: no overflow
            bias_offset_.push_back(num_params_);
            if (bias_) num_params_ += sizes_[l + 1];
            if (num_params_ > max_params_allowed)
                throw std::invalid_argument("the network has more than " + std::to_string(max_params_allowed) +
                                            " parameters");
        }
    }

    const std::vector<std::size_t>& sizes() const { return sizes_; }
    std::size_t num_layers() const { return sizes_.size() - 1; }
    std::size_t fan_in(std::size_t layer) const { return sizes_[layer]; }
    std::size_t fan_out(std::size_t layer) const { return sizes_[layer + 1]; }
    std::size_t input_width() const { return sizes_.front(); }
    std::size_t output_width() const { return sizes_.back(); }
    std::size_t max_width() const { return *std::max_element(sizes_.begin(), sizes_.end()); }
    std::size_t num_params() const { return num_params_; }
    bool bias() const { return bias_; }
    Activation hidden_activation() const { return hidden_; }
    Activation output_activation() const { return output_; }
    // The network concept (network.hpp): backpropagation multiplies by each W^T, which a
    // meta-iteration transposes once per thread (transpose_weights in backprop.hpp).
    static constexpr bool caches_transposed_weights = true;
    Activation activation(std::size_t layer) const {
        return layer + 1 == num_layers() ? output_ : hidden_;
    }

    // Offsets of layer `layer`'s W and b inside the flat parameter vector.
    std::size_t weight_offset(std::size_t layer) const { return weight_offset_[layer]; }
    std::size_t bias_offset(std::size_t layer) const { return bias_offset_[layer]; }

    std::size_t max_layer_params() const {
        std::size_t most = 0;
        for (std::size_t l = 0; l < num_layers(); ++l) most = std::max(most, fan_in(l) * fan_out(l));
        return most;
    }

private:
    std::vector<std::size_t> sizes_;
    Activation hidden_;
    Activation output_;
    bool bias_;
    std::vector<std::size_t> weight_offset_;
    std::vector<std::size_t> bias_offset_;
    std::size_t num_params_ = 0;
};

}  // namespace metafast
