package dev.eventbus.examples;

import dev.eventbus.v1.Ack;
import dev.eventbus.v1.AckError;
import dev.eventbus.v1.Delivery;
import dev.eventbus.v1.EventBusGrpc;
import dev.eventbus.v1.StartPosition;
import dev.eventbus.v1.SubscribeRequest;
import dev.eventbus.v1.SubscribeResponse;
import dev.eventbus.v1.Subscription;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Seed scenario, consumer side: the notification service receives
 * "user.registered" events as a member of a consumer group, processes each
 * event id once (a redelivered duplicate is only acked), prints one JSON line
 * per processed event and acks it. Exits 0 once N distinct events were
 * processed and acked.
 */
public final class Subscriber {
  private static final String USAGE =
      "subscriber --address ADDR --topic T --group G --count N [--timeout-seconds S]";

  private Subscriber() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> spec = new LinkedHashMap<>();
    spec.put("address", null);
    spec.put("topic", null);
    spec.put("group", null);
    spec.put("count", null);
    spec.put("timeout-seconds", "60");
    Map<String, String> args = Common.parseArgs(argv, spec, USAGE);
    int count = Common.positiveInt(args, "count", USAGE);
    int timeoutSeconds = Common.positiveInt(args, "timeout-seconds", USAGE);

    ManagedChannel channel = Common.channel(args.get("address"));
    Handler handler = new Handler(count);
    EventBusGrpc.newStub(channel).subscribe(handler);

    // The first message is the subscription.
    handler.send(SubscribeRequest.newBuilder()
        .setSubscription(Subscription.newBuilder()
            .addTopics(args.get("topic"))
            .setGroup(args.get("group"))
            .setStartPosition(StartPosition.START_POSITION_EARLIEST))
        .build());

    String error = null;
    try {
      Status status = handler.finished.get(timeoutSeconds, TimeUnit.SECONDS);
      if (!status.isOk()) {
        error = "Subscribe stream ended with " + Common.describe(status);
      } else if (!handler.done()) {
        error = "Subscribe stream ended early: " + handler.processed() + " of " + count
            + " events processed";
      }
    } catch (TimeoutException e) {
      error = "timeout after " + timeoutSeconds + "s: " + handler.processed() + " of " + count
          + " events processed";
      handler.cancel("timeout");
    }
    System.out.flush();
    Common.close(channel);
    if (error != null) {
      System.err.println(error);
      System.exit(1);
    }
  }

  /** Receives deliveries and sends acks; every send goes through one lock. */
  private static final class Handler
      implements ClientResponseObserver<SubscribeRequest, SubscribeResponse> {
    final CompletableFuture<Status> finished = new CompletableFuture<>();
    private final int count;
    // Event ids done (a real service keeps this in its database).
    private final Set<String> processed = new HashSet<>();
    private ClientCallStreamObserver<SubscribeRequest> requests;
    private boolean done;

    Handler(int count) {
      this.count = count;
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<SubscribeRequest> requests) {
      this.requests = requests;
    }

    synchronized void send(SubscribeRequest request) {
      requests.onNext(request);
    }

    synchronized void cancel(String why) {
      requests.cancel(why, null);
    }

    synchronized boolean done() {
      return done;
    }

    synchronized int processed() {
      return processed.size();
    }

    @Override
    public synchronized void onNext(SubscribeResponse response) {
      for (AckError e : response.getAckErrorsList()) {
        System.err.println("ack error for delivery " + Long.toUnsignedString(e.getDeliveryId()) + ": "
            + Common.describe(e.getStatus().getCode(), e.getStatus().getMessage()));
      }
      if (done) {
        return; // half-closed: what still arrives goes back to the group
      }
      List<Long> acks = new ArrayList<>();
      for (Delivery d : response.getDeliveriesList()) {
        if (processed.size() >= count) {
          break; // leave the rest unacked: redelivered to the group
        }
        String id = d.getEvent().getId();
        if (!processed.contains(id)) {
          // "Process" the event, then ack it.
          System.out.println(Common.eventLine(d.getEvent(), d.getKey(), d.getPartition(), d.getOffset()));
          processed.add(id);
        } // else: a duplicate (redelivery): already processed, only ack it.
        acks.add(d.getDeliveryId());
      }
      if (!acks.isEmpty()) { // one ack message per response
        System.out.flush();
        requests.onNext(SubscribeRequest.newBuilder()
            .setAck(Ack.newBuilder().addAllDeliveryIds(acks)).build());
      }
      if (processed.size() >= count) {
        done = true;
        requests.onCompleted(); // half-close after the final acks; the server commits and ends the stream
      }
    }

    @Override
    public void onError(Throwable t) {
      finished.complete(Status.fromThrowable(t));
    }

    @Override
    public void onCompleted() {
      finished.complete(Status.OK);
    }
  }
}
