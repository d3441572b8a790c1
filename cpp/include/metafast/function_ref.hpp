// A non-owning reference to a callable: one indirect call, no allocation. A learner's loop that
// takes one is compiled once for all its callers (fit's sampled tasks, meta_step's given ones)
// instead of once per caller's lambda.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace metafast {

template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
public:
    // f must outlive the reference (a lambda passed down a call, as here).
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
    FunctionRef(F&& f)  // NOLINT: converts implicitly, as std::function does
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* object, Args... args) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
          }) {}

    R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

private:
    void* object_;
    R (*call_)(void*, Args...);
};

}  // namespace metafast
