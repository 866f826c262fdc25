#include "core/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace mambaserve {

TensorView::TensorView(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape)
    : TensorView(data, dtype, device, shape.begin(), static_cast<int>(shape.size())) {}

TensorView::TensorView(void* data, DType dtype, Device device, const int64_t* shape, int rank)
    : data_(data), dtype_(dtype), device_(device), rank_(rank) {
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    shape_[d] = shape[d];
    strides_[d] = stride;
    stride *= shape[d];
  }
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < rank_; ++d) n *= shape_[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t stride = 1;
  for (int d = rank_ - 1; d >= 0; --d) {
    if (shape_[d] != 1 && strides_[d] != stride) return false;
    stride *= shape_[d];
  }
  return true;
}

TensorView TensorView::Slice(int d, int64_t begin, int64_t end) const {
  TensorView v = *this;
  d = Wrap(d);
  v.data_ = static_cast<char*>(data_) + begin * strides_[d] * DTypeSize(dtype_);
  v.shape_[d] = end - begin;
  return v;
}

TensorView TensorView::Index(int64_t i) const {
  TensorView v;
  v.data_ = static_cast<char*>(data_) + i * strides_[0] * DTypeSize(dtype_);
  v.dtype_ = dtype_;
  v.device_ = device_;
  v.rank_ = rank_ - 1;
  for (int d = 1; d < rank_; ++d) {
    v.shape_[d - 1] = shape_[d];
    v.strides_[d - 1] = strides_[d];
  }
  return v;
}

absl::StatusOr<TensorView> TensorView::Reshape(std::initializer_list<int64_t> shape) const {
  if (!is_contiguous()) return absl::FailedPreconditionError("Reshape of a strided view");
  TensorView v(data_, dtype_, device_, shape);
  if (v.numel() != numel()) {
    return absl::InvalidArgumentError(absl::StrCat("Reshape ", ShapeString(), " to ",
                                                   v.ShapeString(), " changes the element count"));
  }
  return v;
}

absl::Status TensorView::Expect(const char* name, DType dtype,
                                std::initializer_list<int64_t> shape) const {
  MS_CHECK_ARG(data_ != nullptr, name, ": tensor is missing");
  MS_CHECK_ARG(dtype_ == dtype, name, ": dtype ", DTypeName(dtype_), ", expected ",
               DTypeName(dtype));
  bool ok = static_cast<int>(shape.size()) == rank_;
  int d = 0;
  for (int64_t s : shape) {
    if (ok && s != -1 && shape_[d] != s) ok = false;
    ++d;
  }
  MS_CHECK_ARG(ok, name, ": shape ", ShapeString(), ", expected [", absl::StrJoin(shape, ", "),
               "] (-1 = any)");
  return absl::OkStatus();
}

std::string TensorView::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape_.begin(), shape_.begin() + rank_, ", "), "]");
}

}  // namespace mambaserve
