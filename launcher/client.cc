#include "launcher/client.h"

#include <thread>

#include "absl/strings/str_cat.h"

namespace mambaserve {
namespace {
absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}
}  // namespace

MambaServeClient::MambaServeClient(const std::string& address)
    : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(api::MambaServe::NewStub(channel_)) {}

absl::StatusOr<GenerateResult> MambaServeClient::Generate(
    const api::GenerateRequest& req,
    const std::function<bool(const std::vector<int32_t>&)>& on_tokens) {
  grpc::ClientContext ctx;
  const absl::Time start = absl::Now();
  absl::Time last = start;
  auto reader = stub_->Generate(&ctx, req);
  GenerateResult result;
  api::GenerateResponse resp;
  bool first = true;
  while (reader->Read(&resp)) {
    const absl::Time now = absl::Now();
    std::vector<int32_t> toks(resp.token_ids().begin(), resp.token_ids().end());
    if (!toks.empty()) {
      if (first) {
        result.time_to_first_token = now - start;
        first = false;
      } else {
        result.inter_token.push_back(now - last);
      }
      last = now;
    }
    result.tokens.insert(result.tokens.end(), toks.begin(), toks.end());
    if (resp.prompt_tokens() > 0) result.cached_prompt_tokens = resp.cached_prompt_tokens();
    if (resp.finished()) result.finish_reason = resp.finish_reason();
    if (on_tokens && !on_tokens(toks)) ctx.TryCancel();
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return FromGrpc(st);
  return result;
}

absl::StatusOr<api::HealthResponse> MambaServeClient::Health() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  api::HealthResponse resp;
  grpc::Status st = stub_->Health(&ctx, api::HealthRequest(), &resp);
  if (!st.ok()) return FromGrpc(st);
  return resp;
}

absl::StatusOr<api::InfoResponse> MambaServeClient::Info() {
  grpc::ClientContext ctx;
  api::InfoResponse resp;
  grpc::Status st = stub_->Info(&ctx, api::InfoRequest(), &resp);
  if (!st.ok()) return FromGrpc(st);
  return resp;
}

absl::StatusOr<api::StatsResponse> MambaServeClient::Stats() {
  grpc::ClientContext ctx;
  api::StatsResponse resp;
  grpc::Status st = stub_->Stats(&ctx, api::StatsRequest(), &resp);
  if (!st.ok()) return FromGrpc(st);
  return resp;
}

absl::Status MambaServeClient::WaitUntilServing(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("not polled yet");
  while (absl::Now() < deadline) {
    auto h = Health();
    if (h.ok() && h->serving()) return absl::OkStatus();
    last = h.ok() ? absl::UnavailableError(h->status()) : h.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("server not serving: ", last.message()));
}

}  // namespace mambaserve
