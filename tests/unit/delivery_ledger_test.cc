// DeliveryLedger: the at-least-once bookkeeping of one consumer-group
// member, driven directly with simulated time (absl::Time values the tests
// advance; no sleeps, no broker): the commit offset under out-of-order acks,
// redelivery after nacks and ack deadlines, the dead-letter path, ordering,
// flow control, leases and revocation; then random operation sequences
// checked step by step against a simple model.

#include "kafka/delivery_ledger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kafka/consumer.h"

namespace eventbus::kafka {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Key = std::optional<std::string>;
using Ids = std::vector<uint64_t>;
using Errors = std::vector<AckError>;
using Writes = std::vector<DeliveryLedger::DeadLetterWrite>;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);
constexpr uint64_t kAllSent = std::numeric_limits<uint64_t>::max();
constexpr auto kGone = absl::StatusCode::kFailedPrecondition;
constexpr auto kNotFound = absl::StatusCode::kNotFound;
const TopicPartition kP0{"orders", 0};
const TopicPartition kP1{"orders", 1};

TopicPartition Tp(int32_t p) { return {"orders", p}; }

std::shared_ptr<const InboundRecord> Rec(const TopicPartition& tp, int64_t offset,
                                         Key key = std::nullopt,
                                         std::optional<std::string> value = "v",
                                         const std::vector<HeaderView>& headers = {}) {
  std::optional<absl::string_view> k, v;
  if (key) k = *key;
  if (value) v = *value;
  return std::make_shared<const InboundRecord>(
      InboundRecord::Make(tp.topic, tp.partition, offset, k, v, headers, 0));
}

GroupConsumerOptions Options(Ordering ordering = Ordering::kUnordered) {
  GroupConsumerOptions o;
  o.ordering = ordering;
  o.ack_deadline = absl::Seconds(10);
  o.retry_backoff = absl::Seconds(1);
  o.retry_backoff_max = absl::Seconds(5);
  o.max_delivery_attempts = 5;
  o.max_outstanding_messages = 100;
  o.max_outstanding_bytes = 1 << 20;
  return o;
}

std::string Name(const TopicPartition& tp) { return absl::StrCat(tp.topic, "/", tp.partition); }
std::vector<std::string> Names(const std::vector<TopicPartition>& tps) {
  std::vector<std::string> out;
  for (const TopicPartition& tp : tps) out.push_back(Name(tp));
  return out;
}
// "orders/0@5": commit offset 5 of orders/0.
std::vector<std::string> Names(const std::vector<std::pair<TopicPartition, int64_t>>& offsets) {
  std::vector<std::string> out;
  for (const auto& [tp, offset] : offsets) out.push_back(absl::StrCat(Name(tp), "@", offset));
  return out;
}
// "orders/0@5": the delivery of offset 5 of orders/0.
std::vector<std::string> Where(const std::vector<Delivery>& ds) {
  std::vector<std::string> out;
  for (const Delivery& d : ds) {
    out.push_back(absl::StrCat(d.record->topic, "/", d.record->partition, "@", d.record->offset));
  }
  return out;
}
std::vector<int64_t> OffsetsOf(const std::vector<Delivery>& ds) {
  std::vector<int64_t> out;
  for (const Delivery& d : ds) out.push_back(d.record->offset);
  return out;
}
// The one delivery of `ds` (a failure, and an exception, when there is not one).
Delivery One(const std::vector<Delivery>& ds) {
  EXPECT_EQ(ds.size(), 1u) << ::testing::PrintToString(OffsetsOf(ds));
  return ds.at(0);
}
std::string Describe(const DeliveryLedger::Stats& s) {
  return absl::StrCat("in_progress=", s.in_progress_messages, "/", s.in_progress_bytes,
                      "B waiting=", s.waiting, " outstanding=", s.outstanding,
                      " scheduled=", s.scheduled, " held=", s.held,
                      " dead_letter_writes=", s.dead_letter_writes);
}

void ExpectErrors(const Errors& got, const Errors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].delivery_id, want[i].delivery_id);
    EXPECT_EQ(got[i].status.code(), want[i].status.code()) << got[i].status;
    EXPECT_THAT(std::string(got[i].status.message()), HasSubstr(want[i].status.message()));
  }
}
void ExpectOneError(const Errors& got, uint64_t id, absl::StatusCode code, absl::string_view says) {
  ExpectErrors(got, {{id, absl::Status(code, says)}});
}

// A ledger, the time it is told, and short ways to drive it.
class DeliveryLedgerTest : public ::testing::Test {
 protected:
  void Start(const GroupConsumerOptions& options = Options(),
             const std::vector<TopicPartition>& partitions = {kP0}) {
    ledger_ = std::make_unique<DeliveryLedger>(options);
    for (const TopicPartition& tp : partitions) ledger_->Assign(tp);
  }
  // Offers a record; returns what that delivered.
  std::vector<Delivery> Offer(const std::shared_ptr<const InboundRecord>& record) {
    EXPECT_TRUE(ledger_->Offer(record, now_)) << record->offset;
    return Take();
  }
  std::vector<Delivery> Offer(const TopicPartition& tp, int64_t offset, Key key = std::nullopt) {
    return Offer(Rec(tp, offset, std::move(key)));
  }
  // Offers offsets [from, to) without keys.
  std::vector<Delivery> OfferRange(const TopicPartition& tp, int64_t from, int64_t to) {
    std::vector<Delivery> out;
    for (int64_t o = from; o < to; ++o) {
      for (Delivery& d : Offer(tp, o)) out.push_back(std::move(d));
    }
    return out;
  }
  std::vector<Delivery> Take() { return ledger_->TakeDeliveries(); }
  // Moves time on by `d`, ticks, and returns what that delivered.
  std::vector<Delivery> Tick(absl::Duration d, uint64_t first_unsent = kAllSent) {
    now_ += d;
    ledger_->Tick(now_, first_unsent);
    return Take();
  }
  Errors Ack(const Ids& ids) { return ledger_->Ack(ids, now_); }
  Errors Nack(const Ids& ids, std::optional<absl::Duration> d) {
    return ledger_->Nack(ids, d, now_);
  }
  Errors DeadLetter(const Ids& ids, const std::string& why) {
    return ledger_->DeadLetter(ids, why, now_);
  }
  Errors Extend(const Ids& ids, absl::Duration d) { return ledger_->Extend(ids, d, now_); }
  Writes TakeWrites() { return ledger_->TakeDeadLetterWrites(); }
  // The one dead-letter write queued now.
  DeliveryLedger::DeadLetterWrite OneWrite() {
    Writes writes = TakeWrites();
    EXPECT_EQ(writes.size(), 1u);
    return writes.at(0);
  }
  void Written(uint64_t ticket, absl::Status status = absl::OkStatus()) {
    ledger_->DeadLettered(ticket, status, now_);
  }
  std::vector<std::string> ToStore() { return Names(ledger_->TakeOffsetsToStore()); }
  DeliveryLedger::Revocation Revoke(const std::vector<TopicPartition>& tps, bool lost) {
    return ledger_->Revoke(tps, lost);
  }
  DeliveryLedger::Stats Stats() const { return ledger_->stats(); }
  void ExpectIdle() const { EXPECT_EQ(Describe(Stats()), Describe({})); }

  std::unique_ptr<DeliveryLedger> ledger_;
  absl::Time now_ = kStart;
};

// --- Offsets ------------------------------------------------------------------

TEST_F(DeliveryLedgerTest, OutOfOrderAcksCommitOnlyTheFullyAckedPrefix) {
  Start(Options(), {kP0, kP1});
  std::vector<Delivery> d = OfferRange(kP0, 0, 5);
  std::vector<Delivery> e = OfferRange(kP1, 10, 12);
  ASSERT_EQ(d.size(), 5u);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_THAT(Ack({d[1].id, d[3].id, d[4].id}), IsEmpty());
  EXPECT_THAT(ToStore(), IsEmpty()) << "offset 0 is unacked";
  EXPECT_THAT(Ack({d[0].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@2")) << "offset 2 is unacked";
  EXPECT_THAT(Ack({e[1].id}), IsEmpty());
  EXPECT_THAT(ToStore(), IsEmpty()) << "orders/1 offset 10 is unacked";
  EXPECT_THAT(Ack({d[2].id, e[0].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@5", "orders/1@12"));
  ExpectIdle();
}

TEST_F(DeliveryLedgerTest, CommitOffsetIsGivenOncePerChangeAndAgainAfterAFailedStore) {
  Start();
  std::vector<Delivery> d = OfferRange(kP0, 0, 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_THAT(Ack({d[0].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
  Tick(absl::Seconds(1));
  EXPECT_THAT(ToStore(), IsEmpty());
  ledger_->StoreFailed(kP0);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1")) << "offered again after StoreFailed";
  EXPECT_THAT(ToStore(), IsEmpty());
  ledger_->StoreFailed(kP1);  // not assigned: nothing
  EXPECT_THAT(Ack({d[2].id}), IsEmpty());
  EXPECT_THAT(ToStore(), IsEmpty());
  EXPECT_THAT(Ack({d[1].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3"));
}

TEST_F(DeliveryLedgerTest, OfferRefusesUnassignedPartitionsAndOffsetsAlreadySeen) {
  Start();
  EXPECT_FALSE(ledger_->Offer(Rec(kP1, 0), now_));
  EXPECT_TRUE(ledger_->Offer(Rec(kP0, 5), now_));
  EXPECT_FALSE(ledger_->Offer(Rec(kP0, 5), now_));
  EXPECT_FALSE(ledger_->Offer(Rec(kP0, 3), now_));
  EXPECT_TRUE(ledger_->Offer(Rec(kP0, 9), now_)) << "offsets may skip (compaction)";
  std::vector<Delivery> d = Take();
  ASSERT_THAT(OffsetsOf(d), ElementsAre(5, 9));
  EXPECT_EQ(Stats().in_progress_messages, 2);
  EXPECT_THAT(Ack({d[1].id, d[0].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@10")) << "skipped offsets are not waited for";
}

// --- Redelivery ---------------------------------------------------------------

TEST_F(DeliveryLedgerTest, NackWithADelayRedeliversAfterItUnderANewIdWithTheNextAttempt) {
  Start();
  const Delivery first = One(Offer(kP0, 0));
  EXPECT_EQ(first.attempt, 1);
  EXPECT_THAT(Nack({first.id}, absl::Milliseconds(300)), IsEmpty());
  EXPECT_THAT(Take(), IsEmpty());
  EXPECT_EQ(Stats().scheduled, 1);
  EXPECT_THAT(Tick(absl::Milliseconds(299)), IsEmpty());
  const Delivery second = One(Tick(absl::Milliseconds(1)));
  EXPECT_EQ(second.attempt, 2);
  EXPECT_GT(second.id, first.id);
  EXPECT_EQ(second.record, first.record);
  ExpectOneError(Ack({first.id}), first.id, kGone, "already acked, nacked or dead-lettered");
  EXPECT_THAT(Ack({second.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
}

TEST_F(DeliveryLedgerTest, NackWithoutADelayBacksOffDoublingPerAttemptUpToTheMax) {
  GroupConsumerOptions o = Options();  // retry_backoff 1 s, retry_backoff_max 5 s
  o.max_delivery_attempts = 10;
  o.ack_deadline = absl::Minutes(5);
  Start(o);
  Delivery d = One(Offer(kP0, 0));
  const int want_seconds[] = {1, 2, 4, 5, 5};
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(absl::StrCat("nack of attempt ", i + 1));
    EXPECT_THAT(Nack({d.id}, std::nullopt), IsEmpty());
    EXPECT_THAT(Tick(absl::Seconds(want_seconds[i]) - absl::Milliseconds(1)), IsEmpty());
    d = One(Tick(absl::Milliseconds(1)));
    EXPECT_EQ(d.attempt, i + 2);
  }
}

TEST_F(DeliveryLedgerTest, UnackedDeliveryIsRedeliveredAfterItsDeadlineTheScanAndTheBackoff) {
  Start();  // ack_deadline 10 s, retry_backoff 1 s
  const Delivery first = One(Offer(kP0, 0));
  EXPECT_THAT(Tick(absl::Milliseconds(9950)), IsEmpty());  // a scan; the next at 10.05 s
  EXPECT_THAT(Tick(absl::Milliseconds(50)), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1) << "deadline passed, but no scan is due yet";
  EXPECT_THAT(Tick(absl::Milliseconds(50)), IsEmpty()) << "the retry backoff runs first";
  EXPECT_EQ(Describe(Stats()), "in_progress=1/1B waiting=0 outstanding=0 scheduled=1 held=0 "
                               "dead_letter_writes=0");
  EXPECT_THAT(Tick(absl::Milliseconds(999)), IsEmpty());
  const Delivery again = One(Tick(absl::Milliseconds(1)));
  EXPECT_EQ(again.attempt, 2);
  EXPECT_GT(again.id, first.id);
  EXPECT_EQ(again.record, first.record);
  ExpectOneError(Ack({first.id}), first.id, kGone, "redelivered");
  EXPECT_THAT(Ack({again.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
  EXPECT_THAT(Tick(absl::Minutes(5)), IsEmpty()) << "redelivered after its ack";
}

TEST_F(DeliveryLedgerTest, DeliveryStillQueuedForTheClientGetsAFreshDeadlineNotARedelivery) {
  Start();
  const Delivery d = One(Offer(kP0, 0));
  EXPECT_THAT(Tick(absl::Seconds(10), /*first_unsent=*/d.id), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1) << "the client has not seen it: its deadline starts now";
  EXPECT_THAT(Tick(absl::Milliseconds(9900)), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1);
  EXPECT_THAT(Tick(absl::Milliseconds(100)), IsEmpty());  // 20 s: the fresh deadline
  EXPECT_EQ(Stats().scheduled, 1);
  EXPECT_EQ(One(Tick(absl::Seconds(1))).attempt, 2);
}

TEST_F(DeliveryLedgerTest, AckErrorsTellNeverSentFromNoLongerOutstanding) {
  Start();
  std::vector<Delivery> d = OfferRange(kP0, 0, 3);
  ASSERT_EQ(d.size(), 3u);
  const uint64_t never = d[2].id + 100;
  ExpectErrors(Ack({d[0].id, 0, never, d[0].id}),
               {{0, absl::NotFoundError("never sent")},
                {never, absl::NotFoundError("never sent")},
                {d[0].id, absl::FailedPreconditionError("already acked")}});  // a double ack
  ExpectOneError(Nack({d[0].id}, std::nullopt), d[0].id, kGone, "already acked");
  ExpectOneError(DeadLetter({d[0].id}, "x"), d[0].id, kGone, "already acked");
  ExpectOneError(Extend({d[0].id}, absl::Seconds(1)), d[0].id, kGone, "already acked");
  ExpectOneError(Nack({never}, std::nullopt), never, kNotFound, "never sent");
  EXPECT_THAT(Ack({d[1].id, d[2].id}), IsEmpty()) << "the bad ids changed nothing";
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3"));
  EXPECT_THAT(TakeWrites(), IsEmpty());
  ExpectIdle();
}

// --- Dead letters -------------------------------------------------------------

TEST_F(DeliveryLedgerTest, NackOfTheLastAttemptDeadLettersTheEventWithTheCause) {
  GroupConsumerOptions o = Options();
  o.max_delivery_attempts = 3;
  Start(o);
  std::vector<Delivery> d = OfferRange(kP0, 0, 2);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_THAT(Ack({d[1].id}), IsEmpty());
  Delivery current = d[0];
  for (int attempt = 1; attempt < 3; ++attempt) {
    EXPECT_THAT(Nack({current.id}, absl::ZeroDuration()), IsEmpty());
    current = One(Tick(absl::ZeroDuration()));
  }
  EXPECT_EQ(current.attempt, 3);
  EXPECT_THAT(Nack({current.id}, absl::ZeroDuration()), IsEmpty());
  EXPECT_THAT(Tick(absl::Hours(1)), IsEmpty()) << "delivered after its last attempt";
  const DeliveryLedger::DeadLetterWrite write = OneWrite();
  EXPECT_EQ(write.record, d[0].record);
  EXPECT_EQ(write.attempts, 3);
  EXPECT_THAT(write.reason, HasSubstr("max delivery attempts (3)"));
  EXPECT_THAT(write.reason, HasSubstr("nacked"));
  EXPECT_EQ(Stats().dead_letter_writes, 1);
  EXPECT_EQ(Stats().in_progress_messages, 1);
  EXPECT_THAT(TakeWrites(), IsEmpty()) << "handed out once";
  EXPECT_THAT(ToStore(), IsEmpty()) << "committable before the write is done";
  Written(write.ticket);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@2"));
  ExpectIdle();
}

TEST_F(DeliveryLedgerTest, EventWhoseLastAttemptTimesOutIsDeadLettered) {
  GroupConsumerOptions o = Options();
  o.max_delivery_attempts = 2;
  Start(o);
  Offer(kP0, 0);
  EXPECT_THAT(Tick(absl::Seconds(10)), IsEmpty());
  const Delivery again = One(Tick(absl::Seconds(1)));
  EXPECT_THAT(Tick(absl::Seconds(10)), IsEmpty());
  const DeliveryLedger::DeadLetterWrite write = OneWrite();
  EXPECT_EQ(write.attempts, 2);
  EXPECT_THAT(write.reason, HasSubstr("max delivery attempts (2)"));
  EXPECT_THAT(write.reason, HasSubstr("ack deadline passed"));
  ExpectOneError(Ack({again.id}), again.id, kGone, "went to the dead-letter topic");
  Written(write.ticket);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
  ExpectIdle();
}

// --- Observer (metrics) ---------------------------------------------------------

// Records what the ledger tells its observer, as "event offset" lines.
class RecordingObserver final : public ConsumerObserver {
 public:
  void Delivered(const InboundRecord& r, int attempt, absl::Time) override {
    log.push_back(absl::StrCat("delivered ", r.offset, " attempt ", attempt));
  }
  void Acked(const InboundRecord& r, absl::Duration since) override {
    log.push_back(absl::StrCat("acked ", r.offset, " after ", absl::FormatDuration(since)));
  }
  void Nacked(const InboundRecord& r) override {
    log.push_back(absl::StrCat("nacked ", r.offset));
  }
  void Redelivering(const InboundRecord& r, RedeliveryReason why) override {
    log.push_back(absl::StrCat("redelivering ", r.offset,
                               why == RedeliveryReason::kNack ? " nack" : " deadline"));
  }
  void DeadLettered(const InboundRecord& r) override {
    log.push_back(absl::StrCat("dead-lettered ", r.offset));
  }
  std::vector<std::string> log;
};

TEST_F(DeliveryLedgerTest, ObserverHearsOfEveryDeliveryAckNackRedeliveryAndDeadLetter) {
  RecordingObserver observer;
  GroupConsumerOptions o = Options();
  o.max_delivery_attempts = 2;
  o.observer = &observer;
  Start(o);
  std::vector<Delivery> d = OfferRange(kP0, 0, 3);
  now_ += absl::Milliseconds(250);
  EXPECT_THAT(Ack({d[0].id}), IsEmpty());
  EXPECT_THAT(Nack({d[1].id}, absl::ZeroDuration()), IsEmpty());
  const Delivery again = One(Tick(absl::ZeroDuration()));
  // Offset 2's deadline (10 s after t=0) passes, not yet the redelivery's.
  EXPECT_THAT(Tick(absl::Seconds(9.8)), IsEmpty());
  EXPECT_THAT(Nack({again.id}, absl::ZeroDuration()), IsEmpty());  // its last attempt
  Written(OneWrite().ticket);
  EXPECT_THAT(observer.log,
              ElementsAre("delivered 0 attempt 1", "delivered 1 attempt 1",
                          "delivered 2 attempt 1", "acked 0 after 250ms",
                          "nacked 1", "redelivering 1 nack", "delivered 1 attempt 2",
                          "redelivering 2 deadline", "nacked 1", "dead-lettered 1"));
}

TEST_F(DeliveryLedgerTest, DeadLetterQueuesTheWriteAtOnceWithTheSubscribersReason) {
  Start();
  std::vector<Delivery> d = OfferRange(kP0, 0, 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_THAT(DeadLetter({d[0].id}, "payload is not JSON"), IsEmpty());
  EXPECT_THAT(DeadLetter({d[1].id}, ""), IsEmpty());
  Writes writes = TakeWrites();
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes[0].record, d[0].record);
  EXPECT_EQ(writes[0].attempts, 1);
  EXPECT_EQ(writes[0].reason, "payload is not JSON");
  EXPECT_EQ(writes[1].record, d[1].record);
  EXPECT_EQ(writes[1].reason, "dead-lettered by the subscriber");
  EXPECT_EQ(Stats().dead_letter_writes, 2);
  EXPECT_EQ(Stats().in_progress_messages, 3);
  EXPECT_THAT(Ack({d[2].id}), IsEmpty());
  Written(writes[1].ticket);
  EXPECT_THAT(ToStore(), IsEmpty()) << "offset 0 is still being written";
  EXPECT_EQ(Stats().dead_letter_writes, 1);
  Written(writes[0].ticket);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3"));
  ExpectIdle();
  ExpectOneError(DeadLetter({d[0].id}, "again"), d[0].id, kGone, "no longer outstanding");
  EXPECT_THAT(TakeWrites(), IsEmpty());
}

TEST_F(DeliveryLedgerTest, FailedDeadLetterWriteIsRetriedAfterABackoffWithItsReasonAndAttempts) {
  Start();  // retry_backoff 1 s
  EXPECT_THAT(Nack({One(Offer(kP0, 0)).id}, absl::ZeroDuration()), IsEmpty());
  EXPECT_THAT(DeadLetter({One(Tick(absl::ZeroDuration())).id}, "poison"), IsEmpty());
  const DeliveryLedger::DeadLetterWrite first = OneWrite();
  EXPECT_EQ(first.attempts, 2);
  Written(first.ticket, absl::UnavailableError("broker down"));
  EXPECT_EQ(Describe(Stats()), "in_progress=1/1B waiting=0 outstanding=0 scheduled=1 held=0 "
                               "dead_letter_writes=0");
  Tick(absl::Milliseconds(999));
  EXPECT_THAT(TakeWrites(), IsEmpty()) << "retried before the backoff";
  Tick(absl::Milliseconds(1));
  const DeliveryLedger::DeadLetterWrite second = OneWrite();
  EXPECT_NE(second.ticket, first.ticket);
  EXPECT_EQ(second.record, first.record);
  EXPECT_EQ(second.attempts, 2);
  EXPECT_EQ(second.reason, "poison");
  EXPECT_EQ(Stats().dead_letter_writes, 1);
  Written(second.ticket, absl::DeadlineExceededError("timed out"));
  Tick(absl::Milliseconds(1999));
  EXPECT_THAT(TakeWrites(), IsEmpty()) << "the second failure in a row waits 2 s";
  Tick(absl::Milliseconds(1));
  const DeliveryLedger::DeadLetterWrite third = OneWrite();
  EXPECT_EQ(third.reason, "poison");
  EXPECT_THAT(ToStore(), IsEmpty());
  Written(third.ticket);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
  Written(first.ticket);  // answered before: ignored
  ExpectIdle();
  EXPECT_THAT(Take(), IsEmpty());
}

// --- Ordering -----------------------------------------------------------------

TEST_F(DeliveryLedgerTest, PerKeyOrderingKeepsOneOutstandingDeliveryPerKey) {
  Start(Options(Ordering::kPerKey));
  const Key keys[] = {"a", "b", "a", std::nullopt, std::nullopt, "b", ""};
  std::vector<Delivery> got;
  for (int64_t i = 0; i < 7; ++i) {
    for (Delivery& d : Offer(kP0, i, keys[i])) got.push_back(d);
  }
  ASSERT_THAT(OffsetsOf(got), ElementsAre(0, 1, 3, 6)) << "no key and \"\" are different keys";
  EXPECT_EQ(Stats().held, 3);
  EXPECT_EQ(Stats().in_progress_messages, 7);
  EXPECT_THAT(Ack({got[0].id}), IsEmpty());
  EXPECT_THAT(OffsetsOf(Take()), ElementsAre(2));
  EXPECT_THAT(Ack({got[2].id}), IsEmpty());
  EXPECT_THAT(OffsetsOf(Take()), ElementsAre(4));
  EXPECT_THAT(Ack({got[1].id}), IsEmpty());
  EXPECT_THAT(OffsetsOf(Take()), ElementsAre(5));
  EXPECT_EQ(Stats().held, 0);
}

TEST_F(DeliveryLedgerTest, PerKeyNackedEventKeepsItsKeyBusyUntilItIsFinished) {
  Start(Options(Ordering::kPerKey));
  const Delivery d = One(Offer(kP0, 0, "a"));
  EXPECT_THAT(Offer(kP0, 1, "a"), IsEmpty());
  EXPECT_THAT(Nack({d.id}, absl::Seconds(1)), IsEmpty());
  EXPECT_THAT(Take(), IsEmpty()) << "offset 1 went while offset 0 of its key was nacked";
  EXPECT_THAT(OffsetsOf(Tick(absl::Seconds(1))), ElementsAre(0));
  EXPECT_THAT(Tick(absl::Seconds(10)), IsEmpty()) << "deadline passed: scheduled, still busy";
  const Delivery again = One(Tick(absl::Seconds(2)));  // the backoff of attempt 2
  EXPECT_EQ(again.record->offset, 0);
  EXPECT_EQ(again.attempt, 3);
  EXPECT_THAT(DeadLetter({again.id}, "poison"), IsEmpty());
  EXPECT_THAT(Tick(absl::Hours(1)), IsEmpty()) << "offset 1 went while offset 0 is being written";
  Written(OneWrite().ticket);
  const Delivery next = One(Take());
  EXPECT_EQ(next.record->offset, 1);
  EXPECT_EQ(next.attempt, 1);
}

TEST_F(DeliveryLedgerTest, PerPartitionOrderingKeepsOneOutstandingDeliveryPerPartition) {
  Start(Options(Ordering::kPerPartition), {kP0, kP1});
  std::vector<Delivery> got;
  for (auto [p, offset, key] : std::vector<std::tuple<int, int64_t, std::string>>{
           {0, 0, "a"}, {0, 1, "b"}, {0, 2, "c"}, {1, 0, "a"}, {1, 1, "a"}}) {
    for (Delivery& d : Offer(Tp(p), offset, key)) got.push_back(d);
  }
  ASSERT_THAT(Where(got), ElementsAre("orders/0@0", "orders/1@0"));
  EXPECT_EQ(Stats().held, 3);
  EXPECT_THAT(Ack({got[0].id}), IsEmpty());
  const Delivery p0 = One(Take());
  EXPECT_THAT(Where({p0}), ElementsAre("orders/0@1"));
  EXPECT_THAT(DeadLetter({got[1].id}, "x"), IsEmpty());
  EXPECT_THAT(Take(), IsEmpty());
  Written(OneWrite().ticket);
  EXPECT_THAT(Where(Take()), ElementsAre("orders/1@1"));
  EXPECT_THAT(Nack({p0.id}, absl::ZeroDuration()), IsEmpty());
  const Delivery again = One(Tick(absl::ZeroDuration()));
  EXPECT_THAT(Where({again}), ElementsAre("orders/0@1"));
  EXPECT_THAT(Ack({again.id}), IsEmpty());
  EXPECT_THAT(Where(Take()), ElementsAre("orders/0@2"));
}

TEST_F(DeliveryLedgerTest, UnorderedDeliversEveryRecordAtOnce) {
  Start(Options(Ordering::kUnordered));
  std::vector<Delivery> got;
  for (int64_t o = 0; o < 5; ++o) got.push_back(One(Offer(kP0, o, "same")));
  EXPECT_THAT(OffsetsOf(got), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ(Stats().outstanding, 5);
}

// --- Flow control -------------------------------------------------------------

TEST_F(DeliveryLedgerTest, MaxOutstandingMessagesKeepsRecordsWaitingUntilAcksMakeRoom) {
  GroupConsumerOptions o = Options();
  o.max_outstanding_messages = 3;
  Start(o);
  EXPECT_EQ(ledger_->Room(10), 3);
  EXPECT_EQ(ledger_->Room(2), 2);
  std::vector<Delivery> got = OfferRange(kP0, 0, 5);
  ASSERT_THAT(OffsetsOf(got), ElementsAre(0, 1, 2));
  EXPECT_EQ(Stats().waiting, 2);
  EXPECT_EQ(Stats().in_progress_messages, 3);
  EXPECT_EQ(ledger_->Room(10), 0);
  EXPECT_THAT(Ack({got[1].id}), IsEmpty());
  const Delivery third = One(Take());
  EXPECT_EQ(third.record->offset, 3);
  EXPECT_EQ(Stats().waiting, 1);
  EXPECT_EQ(ledger_->Room(10), 0);
  EXPECT_THAT(Ack({got[0].id, got[2].id}), IsEmpty());
  const Delivery fourth = One(Take());
  EXPECT_EQ(fourth.record->offset, 4);
  EXPECT_EQ(Stats().waiting, 0);
  EXPECT_EQ(ledger_->Room(10), 1);
  EXPECT_THAT(Ack({third.id, fourth.id}), IsEmpty());
  ExpectIdle();
  EXPECT_EQ(ledger_->Room(10), 3);
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@5"));
}

TEST_F(DeliveryLedgerTest, MaxOutstandingBytesCountsKeyValueAndHeaders) {
  GroupConsumerOptions o = Options();
  o.max_outstanding_bytes = 40;
  Start(o);
  const std::vector<HeaderView> headers = {{"h", "vvv"}};
  auto record = [&](int64_t offset) { return Rec(kP0, offset, "kk", "0123456789", headers); };
  ASSERT_EQ(record(0)->Bytes(), 16u) << "2 + 10 + 1 + 3";
  EXPECT_EQ(Rec(kP0, 0, std::nullopt, std::nullopt)->Bytes(), 0u);
  std::vector<Delivery> got = {One(Offer(record(0))), One(Offer(record(1)))};
  EXPECT_EQ(Stats().in_progress_bytes, 32);
  EXPECT_EQ(ledger_->Room(10), 1) << "8 bytes left: one more at most";
  got.push_back(One(Offer(record(2))));  // may overshoot by one record
  EXPECT_EQ(Stats().in_progress_bytes, 48);
  EXPECT_EQ(ledger_->Room(10), 0);
  EXPECT_THAT(Offer(record(3)), IsEmpty());
  EXPECT_EQ(Stats().waiting, 1);
  EXPECT_THAT(Ack({got[0].id}), IsEmpty());
  const Delivery more = One(Take());
  EXPECT_EQ(more.record->offset, 3);
  EXPECT_EQ(Stats().in_progress_bytes, 48);
  EXPECT_THAT(Ack({got[1].id, got[2].id, more.id}), IsEmpty());
  ExpectIdle();
}

TEST_F(DeliveryLedgerTest, NackedScheduledAndDeadLetterPendingEventsStillCount) {
  GroupConsumerOptions o = Options();
  o.max_outstanding_messages = 2;
  Start(o);
  std::vector<Delivery> got = OfferRange(kP0, 0, 3);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(Nack({got[0].id}, absl::Seconds(5)), IsEmpty());
  EXPECT_THAT(DeadLetter({got[1].id}, "poison"), IsEmpty());
  const DeliveryLedger::DeadLetterWrite write = OneWrite();
  EXPECT_EQ(Describe(Stats()), "in_progress=2/2B waiting=1 outstanding=0 scheduled=1 held=0 "
                               "dead_letter_writes=1");
  EXPECT_THAT(Tick(absl::Seconds(1)), IsEmpty()) << "no room while both still count";
  EXPECT_EQ(ledger_->Room(10), 0);
  Written(write.ticket);
  EXPECT_EQ(Stats().in_progress_messages, 1);
  const Delivery third = One(Tick(absl::ZeroDuration()));
  EXPECT_EQ(third.record->offset, 2);
  const Delivery again = One(Tick(absl::Seconds(4)));
  EXPECT_EQ(again.record->offset, 0);
  EXPECT_THAT(Ack({third.id, again.id}), IsEmpty());
  ExpectIdle();
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3"));
}

// --- Leases -------------------------------------------------------------------

TEST_F(DeliveryLedgerTest, ExtendMovesTheAckDeadline) {
  Start();  // ack_deadline 10 s
  const Delivery d = One(Offer(kP0, 0));
  EXPECT_THAT(Tick(absl::Seconds(8)), IsEmpty());
  EXPECT_THAT(Extend({d.id}, absl::Seconds(10)), IsEmpty());  // until 18 s
  EXPECT_THAT(Tick(absl::Seconds(4)), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1) << "expired at its first deadline despite the lease";
  EXPECT_THAT(Tick(absl::Milliseconds(5900)), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1);
  EXPECT_THAT(Tick(absl::Milliseconds(100)), IsEmpty());
  EXPECT_EQ(Stats().scheduled, 1);
  const Delivery again = One(Tick(absl::Seconds(1)));
  EXPECT_EQ(again.attempt, 2);
  ExpectOneError(Extend({d.id}, absl::Seconds(10)), d.id, kGone, "redelivered");
  ExpectOneError(Extend({again.id, again.id + 100}, absl::Seconds(30)), again.id + 100, kNotFound,
                 "never sent");
  EXPECT_THAT(Tick(absl::Seconds(29)), IsEmpty());
  EXPECT_EQ(Stats().outstanding, 1) << "the lease of the known id applied";
}

// --- Revocation ---------------------------------------------------------------

TEST_F(DeliveryLedgerTest, RevokeCommitsThePrefixAndDropsEveryEventOfThePartition) {
  GroupConsumerOptions o = Options(Ordering::kPerKey);
  o.max_outstanding_messages = 5;
  Start(o, {kP0, kP1});
  const Delivery p1 = One(Offer(kP1, 0, "a"));
  const Delivery a = One(Offer(kP0, 0, "a"));
  EXPECT_THAT(Offer(kP0, 1, "a"), IsEmpty());
  const Delivery b = One(Offer(kP0, 2, "b"));
  const Delivery c = One(Offer(kP0, 3, "c"));
  EXPECT_THAT(Ack({a.id}), IsEmpty());  // delivers offset 1; not taken yet
  EXPECT_THAT(Nack({c.id}, absl::Seconds(5)), IsEmpty());
  ASSERT_TRUE(ledger_->Offer(Rec(kP0, 4, "a"), now_));  // held behind offset 1
  ASSERT_TRUE(ledger_->Offer(Rec(kP0, 5, "e"), now_));  // at the limit: waits
  EXPECT_EQ(Describe(Stats()), "in_progress=5/10B waiting=1 outstanding=3 scheduled=1 held=1 "
                               "dead_letter_writes=0");
  DeliveryLedger::Revocation r = Revoke({kP0}, /*lost=*/false);
  EXPECT_THAT(Names(r.partitions), ElementsAre("orders/0"));
  EXPECT_THAT(Names(r.commit), ElementsAre("orders/0@1"));
  EXPECT_EQ(Describe(Stats()), "in_progress=1/2B waiting=0 outstanding=1 scheduled=0 held=0 "
                               "dead_letter_writes=0") << "what orders/1 holds";
  EXPECT_THAT(Take(), IsEmpty()) << "offset 1's delivery, not taken yet, is the new owner's";
  ExpectOneError(Ack({b.id}), b.id, kGone, "revoked");
  EXPECT_FALSE(ledger_->assigned(kP0));
  EXPECT_FALSE(ledger_->Offer(Rec(kP0, 6), now_));
  EXPECT_THAT(Ack({p1.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/1@1"));
  EXPECT_THAT(Tick(absl::Minutes(1)), IsEmpty()) << "the nacked event came back";
  ExpectIdle();
}

TEST_F(DeliveryLedgerTest, LostPartitionCommitsNothingAndLateAcksSaySo) {
  Start();
  std::vector<Delivery> d = OfferRange(kP0, 0, 2);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_THAT(Ack({d[0].id}), IsEmpty());
  DeliveryLedger::Revocation r = Revoke({kP0}, /*lost=*/true);
  EXPECT_THAT(Names(r.partitions), ElementsAre("orders/0"));
  EXPECT_THAT(r.commit, IsEmpty());
  ExpectOneError(Ack({d[1].id}), d[1].id, kGone, "lost");
  EXPECT_THAT(ToStore(), IsEmpty());
  ExpectIdle();
  EXPECT_THAT(Revoke({kP0, kP1}, false).partitions, IsEmpty()) << "neither is assigned";
}

TEST_F(DeliveryLedgerTest, DeadLetterWriteOfARevokedPartitionOnlyReleasesItsCount) {
  Start(Options(Ordering::kPerKey), {kP0, kP1});
  const Delivery d = One(Offer(kP0, 0, "a"));
  EXPECT_THAT(Offer(kP0, 1, "a"), IsEmpty());
  const Delivery other = One(Offer(kP1, 0, "a"));
  EXPECT_THAT(DeadLetter({d.id}, "poison"), IsEmpty());
  const DeliveryLedger::DeadLetterWrite write = OneWrite();
  EXPECT_THAT(Revoke({kP0}, false).commit, IsEmpty()) << "offset 0 is still being written";
  EXPECT_EQ(Describe(Stats()), "in_progress=2/4B waiting=0 outstanding=1 scheduled=0 held=0 "
                               "dead_letter_writes=1");
  Written(write.ticket);
  EXPECT_EQ(Describe(Stats()), "in_progress=1/2B waiting=0 outstanding=1 scheduled=0 held=0 "
                               "dead_letter_writes=0");
  EXPECT_THAT(Take(), IsEmpty()) << "offset 1 of key a is the new owner's";
  EXPECT_THAT(ToStore(), IsEmpty());
  EXPECT_THAT(Ack({other.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/1@1"));
  ExpectIdle();
}

TEST_F(DeliveryLedgerTest, DeadLetterWritesOfAnEarlierAssignmentOnlyReleaseTheirCount) {
  Start(Options(Ordering::kPerKey));
  std::vector<Delivery> d = {One(Offer(kP0, 0, "a")), One(Offer(kP0, 1, "b"))};
  EXPECT_THAT(DeadLetter({d[0].id, d[1].id}, "poison"), IsEmpty());
  Writes writes = TakeWrites();
  ASSERT_EQ(writes.size(), 2u);
  Revoke({kP0}, false);
  ledger_->Assign(kP0);
  const Delivery again = One(Offer(kP0, 0, "a"));  // read again from offset 0
  EXPECT_EQ(Stats().in_progress_messages, 3);
  Written(writes[0].ticket);
  EXPECT_THAT(ToStore(), IsEmpty()) << "the old write committed the new assignment's offset 0";
  EXPECT_THAT(Offer(kP0, 1, "a"), IsEmpty()) << "key a is busy with offset 0's new delivery";
  Written(writes[1].ticket, absl::UnavailableError("broker down"));  // not retried
  EXPECT_EQ(Describe(Stats()), "in_progress=2/4B waiting=0 outstanding=1 scheduled=0 held=1 "
                               "dead_letter_writes=0");
  EXPECT_THAT(Ack({again.id}), IsEmpty());
  EXPECT_THAT(OffsetsOf(Take()), ElementsAre(1));
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@1"));
  EXPECT_THAT(Tick(absl::Minutes(5)), IsEmpty());
  EXPECT_THAT(TakeWrites(), IsEmpty());
}

TEST_F(DeliveryLedgerTest, AssignedAgainWithoutARevocationDropsWhatItHeld) {
  // librdkafka revokes before it assigns again; were it not to, the events
  // of the old assignment go as if lost, never committed past.
  Start(Options(Ordering::kPerKey));
  const Delivery first = One(Offer(kP0, 0, "a"));
  EXPECT_THAT(Offer(kP0, 1, "a"), IsEmpty());  // held behind offset 0
  ledger_->Assign(kP0);
  ExpectIdle();
  ExpectOneError(Ack({first.id}), first.id, kGone, "lost");
  const Delivery again = One(Offer(kP0, 1, "a"));
  EXPECT_THAT(Ack({again.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@2"));
}

TEST_F(DeliveryLedgerTest, ReassignedPartitionStartsFresh) {
  Start();
  std::vector<Delivery> d = OfferRange(kP0, 0, 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_THAT(Ack({d[0].id, d[1].id, d[2].id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3"));
  Revoke({kP0}, /*lost=*/true);  // say the commit of 3 did not make it
  ledger_->Assign(kP0);
  const Delivery again = One(Offer(kP0, 2));  // offered again: tracked afresh
  EXPECT_GT(again.id, d[2].id);
  EXPECT_THAT(ToStore(), IsEmpty()) << "nothing finished in this assignment";
  EXPECT_THAT(Ack({again.id}), IsEmpty());
  EXPECT_THAT(ToStore(), ElementsAre("orders/0@3")) << "this assignment stored nothing yet";
}

// --- Random operation sequences against a model ------------------------------

// Where an offered record is, as the model sees it.
enum class At { kWaiting, kHeld, kOutstanding, kScheduled, kDeadLetter, kFinished };

struct ModelRecord {
  std::shared_ptr<const InboundRecord> record;
  At at = At::kWaiting;
  uint64_t id = 0;           // kOutstanding: 0 until the delivery is taken
  int attempt = 0;           // of the latest delivery
  absl::Time deadline, due;  // kOutstanding, kScheduled
  bool write_retry = false;  // kScheduled: a dead-letter write, not a delivery
  int write_attempts = 0;    // kDeadLetter, write_retry
  std::string write_reason;
  uint64_t ticket = 0;       // kDeadLetter: 0 until the write is taken
};

struct ModelPartition {
  bool assigned = false;
  std::map<int64_t, ModelRecord> records;  // above the finished prefix
  std::optional<int64_t> last_offered, commit, stored;
  std::map<Key, std::deque<int64_t>> busy;  // ordered modes: key -> held offsets
};

using Ref = std::pair<int32_t, int64_t>;  // partition, offset

// What the ledger must do, written plainly. Operations note the deliveries
// and dead-letter writes they must cause; Delivered/Written/Stored/Check
// compare them, the commit offsets and the counts with the ledger's.
class Model {
 public:
  explicit Model(const GroupConsumerOptions& o) : o_(o) {}

  void Assign(int32_t p) { parts_[p] = ModelPartition{.assigned = true}; }
  ModelPartition& part(int32_t p) { return parts_[p]; }
  uint64_t max_id() const { return max_id_; }
  bool Idle() const { return counted_ == 0 && waiting_.empty() && orphans_.empty(); }
  Ids OutstandingIds() {
    Ids ids;
    ForEach([&](Ref, ModelRecord& r) { if (r.at == At::kOutstanding) ids.push_back(r.id); });
    return ids;
  }

  bool Offer(const std::shared_ptr<const InboundRecord>& r, absl::Time now) {
    ModelPartition& mp = parts_[r->partition];
    if (!mp.assigned || (mp.last_offered && r->offset <= *mp.last_offered)) return false;
    mp.last_offered = r->offset;
    mp.records[r->offset].record = r;
    if (OverLimit() || !waiting_.empty()) waiting_.push_back({r->partition, r->offset});
    else Admit({r->partition, r->offset}, now);
    return true;
  }
  Errors Ack(const Ids& ids, absl::Time now) {
    Errors errors = ForIds(ids, [&](Ref ref) { Finish(ref, now); });
    AdmitWaiting(now);
    return errors;
  }
  Errors Nack(const Ids& ids, std::optional<absl::Duration> delay, absl::Time now) {
    return ForIds(ids, [&](Ref ref) { Retry(ref, "nacked", delay, now); });
  }
  Errors DeadLetter(const Ids& ids, const std::string& reason) {
    const std::string why = reason.empty() ? "dead-lettered by the subscriber" : reason;
    return ForIds(ids, [&](Ref ref) { QueueWrite(ref, Get(ref).attempt, why); });
  }
  Errors Extend(const Ids& ids, absl::Duration d, absl::Time now) {
    return ForIds(ids, [&](Ref ref) { Get(ref).deadline = now + d; });
  }
  void Tick(absl::Time now, uint64_t first_unsent) {
    if (now >= next_scan_) {  // deadlines, every 100 ms at most
      next_scan_ = now + absl::Milliseconds(100);
      std::vector<Ref> expired;
      ForEach([&](Ref ref, ModelRecord& r) {
        if (r.at != At::kOutstanding || r.deadline > now) return;
        if (r.id >= first_unsent) r.deadline = now + o_.ack_deadline;
        else expired.push_back(ref);
      });
      for (Ref ref : expired) {
        gone_.emplace(Get(ref).id, Get(ref).attempt >= o_.max_delivery_attempts
                                       ? "went to the dead-letter topic"
                                       : "redelivered");
        Retry(ref, "ack deadline passed", std::nullopt, now);
      }
    }
    std::vector<Ref> due;
    ForEach([&](Ref ref, ModelRecord& r) {
      if (r.at == At::kScheduled && r.due <= now) due.push_back(ref);
    });
    for (Ref ref : due) {
      ModelRecord& r = Get(ref);
      if (r.write_retry) QueueWrite(ref, r.write_attempts, std::string(r.write_reason));
      else Send(ref, r.attempt + 1, now);
    }
    AdmitWaiting(now);
  }
  void DeadLettered(uint64_t ticket, bool ok, absl::Time now) {
    if (auto it = orphans_.find(ticket); it != orphans_.end()) {  // only the count
      --counted_;
      bytes_ -= it->second;
      orphans_.erase(it);
      return;
    }
    std::optional<Ref> ref;
    ForEach([&](Ref at, ModelRecord& r) {
      if (r.at == At::kDeadLetter && r.ticket == ticket) ref = at;
    });
    if (!ref) return;  // answered before
    if (ok) {
      write_failures_ = 0;
      return Finish(*ref, now);
    }
    ModelRecord& r = Get(*ref);
    r.at = At::kScheduled;
    r.write_retry = true;
    r.due = now + Backoff(++write_failures_);
  }
  // The revoked partitions and their commit offsets, as Names writes them.
  std::pair<std::vector<std::string>, std::vector<std::string>> Revoke(
      const std::vector<int32_t>& ps, bool lost) {
    std::pair<std::vector<std::string>, std::vector<std::string>> out;
    for (int32_t p : ps) {
      ModelPartition& mp = parts_[p];
      if (!mp.assigned) continue;
      out.first.push_back(Name(Tp(p)));
      if (mp.commit && !lost) out.second.push_back(absl::StrCat(Name(Tp(p)), "@", *mp.commit));
      for (const auto& [o, r] : mp.records) {
        if (r.at == At::kWaiting || r.at == At::kFinished) continue;
        if (r.at == At::kDeadLetter) {  // the write goes on; it only counts
          orphans_[r.ticket] = static_cast<int64_t>(r.record->Bytes());
          continue;
        }
        if (r.at == At::kOutstanding) gone_.emplace(r.id, lost ? "lost" : "revoked");
        Release(r);
      }
      mp = ModelPartition();
      std::erase_if(waiting_, [p](Ref ref) { return ref.first == p; });
    }
    return out;
  }

  // --- What the ledger handed out and holds, against the model ---

  void Delivered(const std::vector<Delivery>& got) {
    std::vector<std::string> names;
    for (const Delivery& d : got) names.push_back(Sent(RefOf(*d.record), d.attempt));
    ExpectSame(names, sent_, "deliveries");
    for (const Delivery& d : got) {
      EXPECT_GT(d.id, max_id_) << "ids rise";
      max_id_ = std::max(max_id_, d.id);
      ModelRecord* r = Find(RefOf(*d.record));
      if (r == nullptr || r->at != At::kOutstanding || r->id != 0) continue;  // reported
      EXPECT_EQ(r->record, d.record);
      r->id = d.id;
    }
  }
  void Written(const Writes& got) {
    std::vector<std::string> names;
    for (const auto& w : got) names.push_back(Write(RefOf(*w.record), w.attempts, w.reason));
    ExpectSame(names, writes_, "dead-letter writes");
    for (const auto& w : got) {
      ModelRecord* r = Find(RefOf(*w.record));
      if (r != nullptr && r->at == At::kDeadLetter && r->ticket == 0) r->ticket = w.ticket;
    }
  }
  void Stored(const std::vector<std::pair<TopicPartition, int64_t>>& got) {
    std::set<int32_t> given;
    for (const auto& [tp, offset] : got) {
      ModelPartition& mp = parts_[tp.partition];
      EXPECT_TRUE(mp.assigned) << Name(tp);
      EXPECT_EQ(mp.commit, offset) << Name(tp);
      EXPECT_NE(mp.stored, offset) << Name(tp) << ": given twice";
      for (const auto& [o, r] : mp.records) {
        EXPECT_TRUE(o >= offset || r.at == At::kFinished)
            << Name(tp) << "@" << offset << " given while offset " << o << " is unfinished";
      }
      mp.stored = offset;
      given.insert(tp.partition);
    }
    for (const auto& [p, mp] : parts_) {
      if (mp.assigned && !given.count(p)) EXPECT_EQ(mp.stored, mp.commit) << "not given: " << p;
    }
  }
  void Check(const DeliveryLedger& ledger) {
    DeliveryLedger::Stats want;
    int64_t unfinished = 0;
    for (const auto& [p, mp] : parts_) {
      EXPECT_EQ(ledger.assigned(Tp(p)), mp.assigned) << p;
      std::map<Key, int> active;  // outstanding, scheduled or being dead-lettered
      for (const auto& [o, r] : mp.records) {
        unfinished += r.at != At::kFinished;
        want.outstanding += r.at == At::kOutstanding;
        want.scheduled += r.at == At::kScheduled;
        want.held += r.at == At::kHeld;
        want.dead_letter_writes += r.at == At::kDeadLetter;
        if (r.at != At::kWaiting && r.at != At::kHeld && r.at != At::kFinished) {
          EXPECT_TRUE(o_.ordering == Ordering::kUnordered || ++active[OrderKey(*r.record)] == 1)
              << "two events of key " << OrderKey(*r.record).value_or("(none)") << " on " << p;
        }
      }
    }
    want.waiting = static_cast<int64_t>(waiting_.size());
    // Every offered, unfinished record is in exactly one place...
    EXPECT_EQ(unfinished, want.waiting + want.outstanding + want.scheduled + want.held +
                              want.dead_letter_writes);
    // ...and all but the waiting ones count, with the writes of revoked ones.
    want.dead_letter_writes += static_cast<int64_t>(orphans_.size());
    EXPECT_EQ(counted_, want.outstanding + want.scheduled + want.held + want.dead_letter_writes);
    want.in_progress_messages = counted_;
    want.in_progress_bytes = bytes_;
    EXPECT_EQ(Describe(ledger.stats()), Describe(want));
    const int room = ledger.Room(1000);
    if (OverLimit() || !waiting_.empty()) {
      EXPECT_EQ(room, 0);
    } else {
      EXPECT_GE(room, 1);
      EXPECT_LE(room, o_.max_outstanding_messages - counted_);
    }
  }

 private:
  static Ref RefOf(const InboundRecord& r) { return {r.partition, r.offset}; }
  template <typename Fn>
  void ForEach(Fn fn) {
    for (auto& [p, mp] : parts_) for (auto& [o, r] : mp.records) fn(Ref{p, o}, r);
  }
  ModelRecord& Get(Ref ref) { return parts_.at(ref.first).records.at(ref.second); }
  ModelRecord* Find(Ref ref) {
    auto it = parts_[ref.first].records.find(ref.second);
    return it == parts_[ref.first].records.end() ? nullptr : &it->second;
  }
  Key OrderKey(const InboundRecord& r) const {
    if (o_.ordering == Ordering::kPerKey && r.key) return std::string(*r.key);
    return std::nullopt;  // no key; kPerPartition: one key for all
  }
  bool OverLimit() const {
    return counted_ >= o_.max_outstanding_messages || bytes_ >= o_.max_outstanding_bytes;
  }
  absl::Duration Backoff(int attempt) const {
    absl::Duration d = o_.retry_backoff;
    for (int i = 1; i < attempt; ++i) d = std::min(2 * d, o_.retry_backoff_max);
    return std::min(d, o_.retry_backoff_max);
  }
  static std::string Sent(Ref ref, int attempt) {
    return absl::StrCat(ref.first, "@", ref.second, " attempt ", attempt);
  }
  static std::string Write(Ref ref, int attempts, const std::string& reason) {
    std::string why = reason;  // the max-attempts reason by its cause, not its wording
    if (absl::StrContains(reason, "max delivery attempts")) {
      why = absl::StrContains(reason, "nacked") ? "max attempts; nacked" : "max attempts; deadline";
    }
    return absl::StrCat(ref.first, "@", ref.second, " attempts ", attempts, ": ", why);
  }
  static void ExpectSame(std::vector<std::string> got, std::vector<std::string>& want,
                         absl::string_view what) {
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << what;
    want.clear();
  }
  template <typename Fn>
  Errors ForIds(const Ids& ids, Fn fn) {
    Errors errors;
    for (uint64_t id : ids) {
      std::optional<Ref> ref;
      ForEach([&](Ref at, ModelRecord& r) {
        if (r.at == At::kOutstanding && r.id == id && id != 0) ref = at;
      });
      if (ref) fn(*ref);
      else if (gone_.count(id)) errors.push_back({id, {kGone, gone_[id]}});
      else if (id == 0 || id > max_id_) errors.push_back({id, {kNotFound, "never sent"}});
      else errors.push_back({id, {kGone, "already acked"}});
    }
    return errors;
  }
  void Admit(Ref ref, absl::Time now) {
    ModelPartition& mp = parts_.at(ref.first);
    ModelRecord& r = mp.records.at(ref.second);
    ++counted_;
    bytes_ += static_cast<int64_t>(r.record->Bytes());
    if (o_.ordering != Ordering::kUnordered) {
      auto [it, free] = mp.busy.try_emplace(OrderKey(*r.record));
      if (!free) {
        r.at = At::kHeld;
        return it->second.push_back(ref.second);
      }
    }
    Send(ref, 1, now);
  }
  void AdmitWaiting(absl::Time now) {
    for (; !waiting_.empty() && !OverLimit(); waiting_.pop_front()) Admit(waiting_.front(), now);
  }
  void Send(Ref ref, int attempt, absl::Time now) {
    ModelRecord& r = Get(ref);
    r = ModelRecord{.record = r.record, .at = At::kOutstanding, .attempt = attempt,
                    .deadline = now + o_.ack_deadline};
    sent_.push_back(Sent(ref, attempt));
  }
  void Release(const ModelRecord& r) {
    --counted_;
    bytes_ -= static_cast<int64_t>(r.record->Bytes());
  }
  void Finish(Ref ref, absl::Time now) {
    ModelPartition& mp = parts_.at(ref.first);
    ModelRecord& r = mp.records.at(ref.second);
    Release(r);
    r.at = At::kFinished;
    if (o_.ordering != Ordering::kUnordered) {
      auto it = mp.busy.find(OrderKey(*r.record));
      if (it->second.empty()) {
        mp.busy.erase(it);
      } else {
        Send({ref.first, it->second.front()}, 1, now);
        it->second.pop_front();
      }
    }
    while (!mp.records.empty() && mp.records.begin()->second.at == At::kFinished) {
      mp.commit = mp.records.begin()->first + 1;
      mp.records.erase(mp.records.begin());
    }
  }
  void Retry(Ref ref, absl::string_view why, std::optional<absl::Duration> delay, absl::Time now) {
    ModelRecord& r = Get(ref);
    if (r.attempt >= o_.max_delivery_attempts) {
      return QueueWrite(ref, r.attempt, absl::StrCat("max delivery attempts; ", why));
    }
    r.at = At::kScheduled;
    r.write_retry = false;
    r.due = now + delay.value_or(Backoff(r.attempt));
  }
  void QueueWrite(Ref ref, int attempts, std::string reason) {
    ModelRecord& r = Get(ref);
    r.at = At::kDeadLetter;
    r.ticket = 0;
    r.write_attempts = attempts;
    writes_.push_back(Write(ref, attempts, reason));
    r.write_reason = std::move(reason);
  }

  const GroupConsumerOptions o_;
  std::map<int32_t, ModelPartition> parts_;
  std::deque<Ref> waiting_;
  std::map<uint64_t, int64_t> orphans_;     // writes of revoked partitions: ticket -> bytes
  std::map<uint64_t, std::string> gone_;    // id -> what a late ack is told
  std::vector<std::string> sent_, writes_;  // due from the operations since the last check
  int64_t counted_ = 0, bytes_ = 0;
  int write_failures_ = 0;
  uint64_t max_id_ = 0;
  absl::Time next_scan_ = absl::InfinitePast();
};

// `steps` random operations on a ledger and the model, checked after each;
// then a drain: what is still assigned must end committed to its end.
void RunSequence(Ordering ordering, uint32_t seed, int steps) {
  std::mt19937 rng(seed);
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  GroupConsumerOptions o = Options(ordering);
  o.max_outstanding_messages = pick(2, 12);
  o.max_outstanding_bytes = pick(20, 400);
  o.ack_deadline = absl::Milliseconds(100 * pick(5, 40));
  o.max_delivery_attempts = static_cast<int>(pick(1, 4));
  o.retry_backoff = absl::Milliseconds(100 * pick(1, 10));
  o.retry_backoff_max = o.retry_backoff * pick(1, 4);
  DeliveryLedger ledger(o);
  Model model(o);
  const int partitions = static_cast<int>(pick(2, 3));
  std::vector<int64_t> next_offset(partitions, 0);
  for (int p = 0; p < partitions; ++p) {
    ledger.Assign(Tp(p));
    model.Assign(p);
  }
  absl::Time now = kStart;
  Ids tickets, answered;  // of the dead-letter writes taken
  auto check = [&] {
    model.Delivered(ledger.TakeDeliveries());
    Writes writes = ledger.TakeDeadLetterWrites();
    for (const auto& w : writes) tickets.push_back(w.ticket);
    model.Written(writes);
    model.Stored(ledger.TakeOffsetsToStore());
    model.Check(ledger);
  };
  auto some_ids = [&] {  // mostly outstanding; also 0, old ids and ids never sent
    const Ids live = model.OutstandingIds();
    Ids ids;
    for (int64_t n = pick(1, 3); n > 0; --n) {
      const int64_t kind = pick(0, 9);
      if (kind < 8 && !live.empty()) ids.push_back(live[pick(0, live.size() - 1)]);
      else if (kind == 8 && model.max_id() > 0) ids.push_back(pick(0, model.max_id()));
      else ids.push_back(model.max_id() + 1000 + pick(0, 1000));
    }
    return ids;
  };
  for (int step = 0; step < steps && !::testing::Test::HasFailure(); ++step) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " step ", step));
    const int64_t op = pick(0, 99);
    const int32_t p = static_cast<int32_t>(pick(0, partitions - 1));
    const Ids ids = some_ids();  // for Ack, Nack, DeadLetter, Extend
    if (op < 30) {
      int64_t offset = next_offset[p] + (pick(0, 4) == 0);  // sometimes skips one
      if (pick(0, 19) == 0) offset = std::max<int64_t>(0, offset - 2);  // maybe seen
      const Key keys[] = {"a", "b", "c", "", std::nullopt};
      std::optional<std::string> value;
      if (pick(0, 9) > 0) value = std::string(pick(0, 40), 'v');
      const std::string header(pick(0, 5), 'h');
      std::vector<HeaderView> headers;
      if (pick(0, 1)) headers.push_back({"h", header});
      auto record = Rec(Tp(p), offset, keys[pick(0, 4)], value, headers);
      const bool want = model.Offer(record, now);
      EXPECT_EQ(ledger.Offer(record, now), want) << "offset " << offset << " of " << p;
      if (want) next_offset[p] = offset + 1;
    } else if (op < 48) {
      ExpectErrors(ledger.Ack(ids, now), model.Ack(ids, now));
    } else if (op < 56) {
      std::optional<absl::Duration> delay;
      if (pick(0, 1)) delay = absl::Milliseconds(pick(0, 2000));
      ExpectErrors(ledger.Nack(ids, delay, now), model.Nack(ids, delay, now));
    } else if (op < 60) {
      const std::string reason = pick(0, 1) ? "poison" : "";
      ExpectErrors(ledger.DeadLetter(ids, reason, now), model.DeadLetter(ids, reason));
    } else if (op < 64) {
      const absl::Duration d = absl::Milliseconds(pick(0, 5000));
      ExpectErrors(ledger.Extend(ids, d, now), model.Extend(ids, d, now));
    } else if (op < 84) {
      const int64_t kind = pick(0, 3);  // 0, the scan interval, a little, or a lot
      now += kind == 0 ? absl::ZeroDuration()
             : kind == 1 ? absl::Milliseconds(100)
                         : absl::Milliseconds(kind == 2 ? pick(1, 150) : pick(1, 3000));
      uint64_t first_unsent = kAllSent;  // or a slow reader was not sent some yet
      const Ids live = model.OutstandingIds();
      if (!live.empty() && pick(0, 4) == 0) first_unsent = live[pick(0, live.size() - 1)];
      ledger.Tick(now, first_unsent);
      model.Tick(now, first_unsent);
    } else if (op < 92) {
      const bool ok = pick(0, 9) < 6;
      uint64_t ticket = 0;
      if (!tickets.empty()) {
        const int64_t i = pick(0, tickets.size() - 1);
        answered.push_back(ticket = tickets[i]);
        tickets.erase(tickets.begin() + i);
      } else if (!answered.empty()) {
        ticket = answered[pick(0, answered.size() - 1)];  // answered again: ignored
      }
      if (ticket != 0) {
        ledger.DeadLettered(ticket, ok ? absl::OkStatus() : absl::UnavailableError("down"), now);
        model.DeadLettered(ticket, ok, now);
      }
    } else if (op < 94) {
      ledger.StoreFailed(Tp(p));
      if (model.part(p).assigned) model.part(p).stored.reset();
    } else if (op < 97) {
      std::vector<int32_t> ps = {p};
      if (pick(0, 3) == 0 && p + 1 < partitions) ps.push_back(p + 1);
      const bool lost = pick(0, 2) == 0;
      std::vector<TopicPartition> tps;
      for (int32_t q : ps) {
        tps.push_back(Tp(q));
        // The next owner (maybe this member again) starts at the last commit.
        const std::optional<int64_t> from = lost ? model.part(q).stored : model.part(q).commit;
        if (from) next_offset[q] = std::min(next_offset[q], *from);
      }
      const auto want = model.Revoke(ps, lost);
      DeliveryLedger::Revocation got = ledger.Revoke(tps, lost);
      EXPECT_EQ(Names(got.partitions), want.first);
      EXPECT_EQ(Names(got.commit), want.second);
    } else {
      for (int32_t q = p; q < p + partitions; ++q) {  // the next partition not assigned
        if (model.part(q % partitions).assigned) continue;
        ledger.Assign(Tp(q % partitions));
        model.Assign(q % partitions);
        break;
      }
    }
    check();
  }
  if (::testing::Test::HasFailure()) return;
  SCOPED_TRACE(absl::StrCat("seed ", seed, " drain"));
  for (int round = 0; round < 100 && !model.Idle() && !::testing::Test::HasFailure(); ++round) {
    now += o.ack_deadline + o.retry_backoff_max;
    ledger.Tick(now, kAllSent);
    model.Tick(now, kAllSent);
    check();
    const Ids ids = model.OutstandingIds();
    ExpectErrors(ledger.Ack(ids, now), model.Ack(ids, now));
    for (uint64_t ticket : tickets) {
      ledger.DeadLettered(ticket, absl::OkStatus(), now);
      model.DeadLettered(ticket, true, now);
    }
    tickets.clear();
    check();
  }
  EXPECT_TRUE(model.Idle());
  EXPECT_EQ(Describe(ledger.stats()), Describe({}));
  for (int32_t p = 0; p < partitions; ++p) {
    const ModelPartition& mp = model.part(p);
    if (mp.assigned && mp.last_offered) {
      EXPECT_EQ(mp.stored, *mp.last_offered + 1) << "orders/" << p << " not committed to its end";
    }
  }
}

void RunSequences(Ordering ordering) {
  for (uint32_t seed = 1; seed <= 200 && !::testing::Test::HasFailure(); ++seed) {
    RunSequence(ordering, seed, 300);
  }
}

TEST(DeliveryLedgerPropertyTest, RandomOperationsUnordered) { RunSequences(Ordering::kUnordered); }
TEST(DeliveryLedgerPropertyTest, RandomOperationsPerKey) { RunSequences(Ordering::kPerKey); }
TEST(DeliveryLedgerPropertyTest, RandomOperationsPerPartition) {
  RunSequences(Ordering::kPerPartition);
}

}  // namespace
}  // namespace eventbus::kafka
