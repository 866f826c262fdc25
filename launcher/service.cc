#include "launcher/service.h"

#include <string>

namespace mambaserve {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::Status MambaServeService::Generate(grpc::ServerContext* ctx, const api::GenerateRequest* req,
                                         grpc::ServerWriter<api::GenerateResponse>* writer) {
  if (!ready_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is not ready");
  GenerateParams p;
  p.prompt.assign(req->prompt_ids().begin(), req->prompt_ids().end());
  p.max_new_tokens = req->max_new_tokens();
  p.sampling.temperature = req->sampling().temperature();
  p.sampling.top_k = req->sampling().top_k();
  p.sampling.top_p = req->sampling().top_p() == 0.0f ? 1.0f : req->sampling().top_p();
  p.sampling.seed = req->sampling().seed();
  p.stop_token_ids.assign(req->stop_token_ids().begin(), req->stop_token_ids().end());
  p.request_id = req->request_id();
  const int prompt_tokens = req->prompt_ids_size();
  auto stream = engine_->Submit(std::move(p));
  if (!stream.ok()) return ToGrpc(stream.status());
  bool first = true;
  while (true) {
    if (ctx->IsCancelled()) {
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    }
    RequestStream::Chunk chunk;
    if (!(*stream)->Pop(absl::Milliseconds(50), &chunk)) continue;
    api::GenerateResponse resp;
    for (int32_t t : chunk.tokens) resp.add_token_ids(t);
    resp.set_finished(chunk.finished);
    resp.set_finish_reason(chunk.finish_reason);
    if (first) {
      resp.set_prompt_tokens(prompt_tokens);
      resp.set_cached_prompt_tokens(static_cast<int32_t>(chunk.cached_prompt_tokens));
      first = false;
    }
    if (!writer->Write(resp)) {  // the client is gone
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "client disconnected");
    }
    if (chunk.finished) {
      if (chunk.finish_reason == "cancelled") {
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      }
      return grpc::Status::OK;
    }
  }
}

grpc::Status MambaServeService::Health(grpc::ServerContext*, const api::HealthRequest*,
                                       api::HealthResponse* resp) {
  const bool serving = ready_ && !engine_->draining();
  resp->set_serving(serving);
  resp->set_status(!ready_ ? "starting" : engine_->draining() ? "draining" : "serving");
  return grpc::Status::OK;
}

grpc::Status MambaServeService::Info(grpc::ServerContext*, const api::InfoRequest*,
                                     api::InfoResponse* resp) {
  *resp = info_;
  return grpc::Status::OK;
}

grpc::Status MambaServeService::Stats(grpc::ServerContext*, const api::StatsRequest*,
                                      api::StatsResponse* resp) {
  const EngineStats s = engine_->Stats();
  resp->set_requests_total(s.requests_total);
  resp->set_requests_finished(s.requests_finished);
  resp->set_requests_cancelled(s.requests_cancelled);
  resp->set_requests_running(s.requests_running);
  resp->set_requests_queued(s.requests_queued);
  resp->set_generated_tokens(s.generated_tokens);
  resp->set_tokens_per_second(s.tokens_per_second);
  resp->set_prefix_cache_lookups(s.cache.lookups);
  resp->set_prefix_cache_hits(s.cache.hits);
  resp->set_prefix_cache_hit_tokens(s.cache.hit_tokens);
  resp->set_prefix_cache_evictions(s.cache.evictions);
  resp->set_free_blocks(s.cache.free_blocks);
  resp->set_total_blocks(s.total_blocks);
  resp->set_steps(s.steps);
  resp->set_preemptions(s.preemptions);
  resp->set_cuda_graph_steps(s.cuda_graph_steps);
  return grpc::Status::OK;
}

}  // namespace mambaserve
