#include "client/cpp/lease_book.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "common/clock.h"

namespace eventbus::client {
namespace {

using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

TEST(LeaseBookTest, ExtendsEveryLeasedDeliveryUntilItIsSettled) {
  common::SimulatedClock clock;
  LeaseBook book(absl::Minutes(60));
  book.Arrived(1, clock.Now());
  book.Arrived(2, clock.Now());
  clock.Advance(absl::Seconds(10));
  std::vector<uint64_t> given_up;
  EXPECT_THAT(book.Due(clock.Now(), &given_up), UnorderedElementsAre(1, 2));
  book.Settled(1);
  EXPECT_FALSE(book.leased(1));
  clock.Advance(absl::Seconds(10));
  EXPECT_THAT(book.Due(clock.Now(), &given_up), UnorderedElementsAre(2));
  EXPECT_THAT(given_up, IsEmpty());
}

TEST(LeaseBookTest, GivesUpAfterMaxExtensionCountedFromEachArrival) {
  common::SimulatedClock clock;
  LeaseBook book(absl::Seconds(30));
  book.Arrived(1, clock.Now());
  clock.Advance(absl::Seconds(20));
  book.Arrived(2, clock.Now());
  clock.Advance(absl::Seconds(10) - absl::Nanoseconds(1));
  std::vector<uint64_t> given_up;
  EXPECT_THAT(book.Due(clock.Now(), &given_up), UnorderedElementsAre(1, 2));
  EXPECT_THAT(given_up, IsEmpty());
  clock.Advance(absl::Nanoseconds(1));  // 30 s after 1 arrived
  EXPECT_THAT(book.Due(clock.Now(), &given_up), UnorderedElementsAre(2));
  EXPECT_THAT(given_up, UnorderedElementsAre(1));
  EXPECT_FALSE(book.leased(1));
  clock.Advance(absl::Seconds(20));  // 30 s after 2 arrived
  given_up.clear();
  EXPECT_THAT(book.Due(clock.Now(), &given_up), IsEmpty());
  EXPECT_THAT(given_up, UnorderedElementsAre(2));
  EXPECT_EQ(book.size(), 0u);
}

TEST(LeaseBookTest, ClearEndsEveryLease) {
  common::SimulatedClock clock;
  LeaseBook book(absl::Minutes(1));
  book.Arrived(7, clock.Now());
  book.Clear();
  std::vector<uint64_t> given_up;
  EXPECT_THAT(book.Due(clock.Now(), &given_up), IsEmpty());
  EXPECT_THAT(given_up, IsEmpty());
}

}  // namespace
}  // namespace eventbus::client
