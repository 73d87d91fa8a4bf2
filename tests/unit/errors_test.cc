// Status mappings: librdkafka delivery errors to absl::Status
// (kafka::DeliveryErrorToStatus) and absl::Status to gRPC / proto statuses
// (server::ToGrpcStatus, server::ToProtoStatus).

#include <gmock/gmock.h>
#include <grpcpp/support/status.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/errors.h"
#include "server/grpc_status.h"

namespace eventbus {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::string_view kTopic = "orders.eu-1";

struct ErrorCase {
  rd_kafka_resp_err_t err;
  absl::StatusCode code;
};

// Every librdkafka error DeliveryErrorToStatus maps on purpose, and a few
// that fall through to INTERNAL.
const std::vector<ErrorCase>& ErrorCases() {
  static const auto* cases = new std::vector<ErrorCase>{
      {RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, absl::StatusCode::kNotFound},
      {RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, absl::StatusCode::kNotFound},
      {RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, absl::StatusCode::kInvalidArgument},
      {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
       absl::StatusCode::kResourceExhausted},
      {RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
       absl::StatusCode::kResourceExhausted},
      {RD_KAFKA_RESP_ERR__QUEUE_FULL, absl::StatusCode::kResourceExhausted},
      {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
       absl::StatusCode::kPermissionDenied},
      {RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
       absl::StatusCode::kPermissionDenied},
      {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
       absl::StatusCode::kPermissionDenied},
      {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR__TRANSPORT, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
       absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR__FATAL, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR__PURGE_QUEUE, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, absl::StatusCode::kUnavailable},
      {RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, absl::StatusCode::kInternal},
      {RD_KAFKA_RESP_ERR__BAD_MSG, absl::StatusCode::kInternal},
      {RD_KAFKA_RESP_ERR_INVALID_MSG, absl::StatusCode::kInternal},
  };
  return *cases;
}

// ---------------------------------------------------------------------------
// kafka::DeliveryErrorToStatus

TEST(DeliveryErrorToStatusTest, MapsEachErrorToItsCode) {
  for (const ErrorCase& c : ErrorCases()) {
    SCOPED_TRACE(rd_kafka_err2name(c.err));
    absl::Status s = kafka::DeliveryErrorToStatus(c.err, kTopic, false);
    EXPECT_EQ(s.code(), c.code) << s;
  }
}

TEST(DeliveryErrorToStatusTest, MessageNamesTheTopicAndTheKafkaError) {
  for (const ErrorCase& c : ErrorCases()) {
    SCOPED_TRACE(rd_kafka_err2name(c.err));
    absl::Status s = kafka::DeliveryErrorToStatus(c.err, kTopic, false);
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(absl::StrCat("\"", kTopic, "\"")));
    EXPECT_THAT(std::string(s.message()), HasSubstr(rd_kafka_err2name(c.err)));
  }
}

TEST(DeliveryErrorToStatusTest, UnavailableSaysTheEventWasNotWritten) {
  for (const ErrorCase& c : ErrorCases()) {
    if (c.code != absl::StatusCode::kUnavailable) continue;
    SCOPED_TRACE(rd_kafka_err2name(c.err));
    absl::Status s = kafka::DeliveryErrorToStatus(c.err, kTopic, false);
    EXPECT_THAT(std::string(s.message()), HasSubstr("not written"));
  }
}

TEST(DeliveryErrorToStatusTest, NotPossiblyPersistedIsNeverUnknown) {
  for (const ErrorCase& c : ErrorCases()) {
    SCOPED_TRACE(rd_kafka_err2name(c.err));
    absl::Status s = kafka::DeliveryErrorToStatus(c.err, kTopic, false);
    EXPECT_NE(s.code(), absl::StatusCode::kUnknown);
    EXPECT_FALSE(kafka::IsPossiblyPersisted(s)) << s;
  }
}

TEST(DeliveryErrorToStatusTest, PossiblyPersistedIsUnknownWhateverTheError) {
  std::vector<rd_kafka_resp_err_t> errors;
  for (const ErrorCase& c : ErrorCases()) errors.push_back(c.err);
  errors.push_back(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
  errors.push_back(RD_KAFKA_RESP_ERR__TIMED_OUT);
  for (rd_kafka_resp_err_t err : errors) {
    SCOPED_TRACE(rd_kafka_err2name(err));
    absl::Status s = kafka::DeliveryErrorToStatus(err, kTopic, true);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnknown) << s;
    EXPECT_TRUE(kafka::IsPossiblyPersisted(s)) << s;
    const std::string message(s.message());
    EXPECT_THAT(message, HasSubstr("possibly persisted"));
    EXPECT_THAT(message, HasSubstr(absl::StrCat("\"", kTopic, "\"")));
    EXPECT_THAT(message, HasSubstr(rd_kafka_err2name(err)));
    EXPECT_THAT(message, HasSubstr("twice"));
  }
}

TEST(IsPossiblyPersistedTest, FalseForOtherStatuses) {
  EXPECT_FALSE(kafka::IsPossiblyPersisted(absl::OkStatus()));
  EXPECT_FALSE(kafka::IsPossiblyPersisted(absl::UnknownError("boom")));
  EXPECT_FALSE(kafka::IsPossiblyPersisted(absl::UnknownError("")));
  // The prefix alone is not enough: the code must be UNKNOWN too.
  EXPECT_FALSE(kafka::IsPossiblyPersisted(
      absl::UnavailableError("possibly persisted: no")));
  EXPECT_FALSE(kafka::IsPossiblyPersisted(
      absl::InternalError("possibly persisted: no")));
}

// ---------------------------------------------------------------------------
// server::ToGrpcStatus, server::ToProtoStatus

struct CodePair {
  absl::StatusCode absl_code;
  grpc::StatusCode grpc_code;
};

const std::vector<CodePair>& ErrorCodePairs() {
  static const auto* pairs = new std::vector<CodePair>{
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded,
       grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied,
       grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted,
       grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition,
       grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  return *pairs;
}

TEST(ToGrpcStatusTest, KeepsCodeAndMessageForEveryErrorCode) {
  ASSERT_EQ(ErrorCodePairs().size(), 16u);
  for (const CodePair& p : ErrorCodePairs()) {
    const std::string message = absl::StrCat(
        "topic \"orders\": ", absl::StatusCodeToString(p.absl_code));
    SCOPED_TRACE(message);
    grpc::Status g = server::ToGrpcStatus(absl::Status(p.absl_code, message));
    EXPECT_FALSE(g.ok());
    EXPECT_EQ(g.error_code(), p.grpc_code);
    EXPECT_EQ(g.error_message(), message);
  }
}

TEST(ToGrpcStatusTest, OkIsOkWithoutMessage) {
  grpc::Status g = server::ToGrpcStatus(absl::OkStatus());
  EXPECT_TRUE(g.ok());
  EXPECT_EQ(g.error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(g.error_message(), "");
}

TEST(ToGrpcStatusTest, KeepsNonAsciiAndEmptyMessages) {
  grpc::Status g = server::ToGrpcStatus(
      absl::InvalidArgumentError("topic: \"\\303\\274\" \xc3\xbc\n2nd line"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), "topic: \"\\303\\274\" \xc3\xbc\n2nd line");
  g = server::ToGrpcStatus(absl::Status(absl::StatusCode::kInternal, ""));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(g.error_message(), "");
}

TEST(ToProtoStatusTest, KeepsCodeAndMessageForEveryErrorCode) {
  for (const CodePair& p : ErrorCodePairs()) {
    const std::string message =
        absl::StrCat("event.type: ", absl::StatusCodeToString(p.absl_code));
    SCOPED_TRACE(message);
    v1::Status out;
    server::ToProtoStatus(absl::Status(p.absl_code, message), &out);
    EXPECT_EQ(out.code(), static_cast<int>(p.grpc_code));
    EXPECT_EQ(out.message(), message);
  }
}

TEST(ToProtoStatusTest, OkIsCodeZeroWithoutMessage) {
  v1::Status out;
  out.set_code(14);
  out.set_message("left over from an earlier result");
  server::ToProtoStatus(absl::OkStatus(), &out);
  EXPECT_EQ(out.code(), 0);
  EXPECT_EQ(out.message(), "");
}

TEST(ToProtoStatusTest, OverwritesAnEarlierError) {
  v1::Status out;
  server::ToProtoStatus(absl::UnavailableError("first"), &out);
  server::ToProtoStatus(absl::NotFoundError("second"), &out);
  EXPECT_EQ(out.code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(out.message(), "second");
}

}  // namespace
}  // namespace eventbus
