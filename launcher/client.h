// A blocking client of the MambaServe gRPC API (the client tool, the load generator and the
// end-to-end tests use it).
#ifndef MAMBASERVE_LAUNCHER_CLIENT_H_
#define MAMBASERVE_LAUNCHER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "launcher/mambaserve_service.grpc.pb.h"

namespace mambaserve {

struct GenerateResult {
  std::vector<int32_t> tokens;
  std::string finish_reason;
  int32_t cached_prompt_tokens = 0;
  absl::Duration time_to_first_token;
  std::vector<absl::Duration> inter_token;  // between consecutive streamed messages
};

class MambaServeClient {
 public:
  explicit MambaServeClient(const std::string& address);
  // Streams a generation to completion. `on_tokens` (optional) sees each message's tokens and
  // may return false to cancel the call (the result is then CANCELLED).
  absl::StatusOr<GenerateResult> Generate(
      const api::GenerateRequest& req,
      const std::function<bool(const std::vector<int32_t>&)>& on_tokens = nullptr);
  absl::StatusOr<api::HealthResponse> Health();
  absl::StatusOr<api::InfoResponse> Info();
  absl::StatusOr<api::StatsResponse> Stats();
  // Polls Health until serving or the deadline passes.
  absl::Status WaitUntilServing(absl::Duration timeout);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::MambaServe::Stub> stub_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_CLIENT_H_
