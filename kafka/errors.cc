#include "kafka/errors.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace eventbus::kafka {
namespace {

constexpr absl::string_view kPossiblyPersisted = "possibly persisted: ";

}  // namespace

absl::Status DeliveryErrorToStatus(rd_kafka_resp_err_t err,
                                   absl::string_view topic,
                                   bool possibly_persisted) {
  const std::string kafka_error =
      absl::StrCat(rd_kafka_err2name(err), ": ", rd_kafka_err2str(err));
  if (possibly_persisted) {
    return absl::UnknownError(absl::StrCat(
        kPossiblyPersisted, "Kafka may or may not have stored the event on "
        "topic \"", topic, "\" (", kafka_error,
        "); a retry may write it twice"));
  }
  switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return absl::NotFoundError(absl::StrCat(
          "topic \"", topic,
          "\" does not exist and topic auto-creation is off (", kafka_error,
          ")"));
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
      return absl::InvalidArgumentError(
          absl::StrCat("invalid topic \"", topic, "\" (", kafka_error, ")"));
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      return absl::ResourceExhaustedError(absl::StrCat(
          "event too large for topic \"", topic, "\" (", kafka_error, ")"));
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return absl::ResourceExhaustedError(absl::StrCat(
          "producer queue full; the event for topic \"", topic,
          "\" was not written (", kafka_error, ")"));
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return absl::PermissionDeniedError(absl::StrCat(
          "Kafka refused the write to topic \"", topic, "\" (", kafka_error,
          ")"));
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return absl::UnavailableError(absl::StrCat(
          "Kafka did not take the event for topic \"", topic, "\" (",
          kafka_error, "); it was not written"));
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      return absl::UnavailableError(absl::StrCat(
          "the Kafka producer was stopped before writing the event to topic \"",
          topic, "\" (", kafka_error, "); it was not written, retry"));
    default:
      return absl::InternalError(absl::StrCat(
          "Kafka error for topic \"", topic, "\": ", kafka_error));
  }
}

bool IsPossiblyPersisted(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnknown &&
         absl::StartsWith(status.message(), kPossiblyPersisted);
}

}  // namespace eventbus::kafka
