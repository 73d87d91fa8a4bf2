package dev.eventbus.examples;

import com.google.protobuf.ByteString;
import dev.eventbus.v1.Event;
import dev.eventbus.v1.EventBusGrpc;
import dev.eventbus.v1.PublishBatchRequest;
import dev.eventbus.v1.PublishBatchResponse;
import dev.eventbus.v1.PublishRequest;
import dev.eventbus.v1.PublishResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;

/**
 * Seed scenario, publisher side: the user service emits N "user.registered"
 * events on one PublishStream, in batches, and prints one JSON line per event
 * Kafka acknowledged. Exits 1 if any event failed.
 */
public final class Publisher {
  private static final String USAGE =
      "publisher --address ADDR --topic T --count N [--run-id R]";
  private static final int BATCH = 100; // events per PublishBatchRequest message

  private Publisher() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> spec = new LinkedHashMap<>();
    spec.put("address", null);
    spec.put("topic", null);
    spec.put("count", null);
    byte[] random = new byte[6];
    new SecureRandom().nextBytes(random);
    spec.put("run-id", HexFormat.of().formatHex(random));
    Map<String, String> args = Common.parseArgs(argv, spec, USAGE);
    int count = Common.positiveInt(args, "count", USAGE);
    String runId = args.get("run-id");

    // Every request; correlation_id is the index, to match results.
    List<PublishRequest> requests = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      String userId = "u-" + runId + "-" + i;
      String data = "{\"user_id\":\"" + userId + "\",\"email\":\"user" + i + "@example.com\"}";
      requests.add(PublishRequest.newBuilder()
          .setTopic(args.get("topic"))
          .setKey(userId) // same user -> same partition, in order
          .setCorrelationId(Integer.toString(i))
          .setEvent(Event.newBuilder()
              // Set by us: a retry keeps the id, so consumers can dedupe.
              .setId(UUID.randomUUID().toString())
              .setType("user.registered")
              .setSource("//users/java")
              .setSubject("users/" + userId)
              .setDataContentType("application/json")
              .setData(ByteString.copyFrom(data, StandardCharsets.UTF_8))
              .putExtensions("runid", runId))
          .build());
    }

    ManagedChannel channel = Common.channel(args.get("address"));
    PublishResponse[] results = new PublishResponse[count];
    CompletableFuture<Status> finished = new CompletableFuture<>();

    EventBusGrpc.newStub(channel).publishStream(
        new ClientResponseObserver<PublishBatchRequest, PublishBatchResponse>() {
          private int next = 0;

          @Override
          public void beforeStart(ClientCallStreamObserver<PublishBatchRequest> stream) {
            // Send batches while the transport has room, then half-close: the
            // server answers every request and ends the stream with OK.
            stream.setOnReadyHandler(() -> {
              while (next < count && stream.isReady()) {
                int end = Math.min(next + BATCH, count);
                stream.onNext(PublishBatchRequest.newBuilder()
                    .addAllRequests(requests.subList(next, end)).build());
                next = end;
                if (next == count) {
                  stream.onCompleted();
                }
              }
            });
          }

          @Override
          public void onNext(PublishBatchResponse batch) {
            for (PublishResponse r : batch.getResponsesList()) {
              results[Integer.parseInt(r.getCorrelationId())] = r;
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
        });

    Status status = finished.get();
    Common.close(channel);
    int failed = 0;
    for (int i = 0; i < count; i++) {
      PublishRequest req = requests.get(i);
      PublishResponse r = results[i];
      if (r != null && r.getStatus().getCode() == 0) {
        Event written = req.getEvent().toBuilder().setId(r.getEventId()).build();
        System.out.println(Common.eventLine(written, req.getKey(), r.getPartition(), r.getOffset()));
      } else {
        failed++;
        String why = r != null
            ? Common.describe(r.getStatus().getCode(), r.getStatus().getMessage())
            : "no result (stream ended with " + Common.describe(status) + ")";
        System.err.println("event " + i + " (key " + req.getKey() + ") failed: " + why);
      }
    }
    System.out.flush();
    if (!status.isOk()) {
      System.err.println("PublishStream ended with " + Common.describe(status));
    }
    if (failed > 0 || !status.isOk()) {
      System.err.println(failed + " of " + count + " events failed");
      System.exit(1);
    }
  }
}
