// Internal: per-call scratch memory that stays on the stack when it is small.
#pragma once

#include <cstddef>
#include <memory>

namespace llmrec {
// Internal linkage: files compiled with ISA flags include this too, and one shared
// instantiation could otherwise be taken from such a file for the baseline code.
namespace {

// n uninitialised values of T: a stack array of N when n <= N, else the heap.
template <class T, std::size_t N>
class Scratch {
 public:
  explicit Scratch(std::size_t n) : heap_(n > N ? new T[n] : nullptr) {}
  T* data() { return heap_ ? heap_.get() : stack_; }

 private:
  alignas(64) T stack_[N];
  std::unique_ptr<T[]> heap_;
};

}  // namespace
}  // namespace llmrec
