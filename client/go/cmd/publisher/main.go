// Command publisher is the seed scenario's user service: it publishes
// user.registered events on a PublishStream, many events per message, waits
// for every result and prints one JSON line per acknowledged event. It exits
// 1 with the status of every failed event.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eventbusv1 "eventbus.dev/examples/go/gen/eventbus/v1"
)

const batchSize = 100 // events per PublishBatchRequest message

// eventLine is the JSON line printed per event (same format in every language).
type eventLine struct {
	ID              string            `json:"id"`
	Type            string            `json:"type"`
	Source          string            `json:"source"`
	Subject         string            `json:"subject"`
	DataContentType string            `json:"data_content_type"`
	Data            string            `json:"data"`
	Extensions      map[string]string `json:"extensions"`
	Key             string            `json:"key"`
	Partition       int32             `json:"partition"`
	Offset          int64             `json:"offset"`
}

func main() { os.Exit(run()) }

func run() int {
	address := flag.String("address", "", "host:port or unix:/path of the sidecar (required)")
	topic := flag.String("topic", "", "topic to publish to (required)")
	count := flag.Int("count", 0, "number of events (required)")
	runID := flag.String("run-id", randomHex(4), "run id, in user ids and the runid extension (default: random hex)")
	flag.Parse()
	if *address == "" || *topic == "" || *count <= 0 {
		fmt.Fprintln(os.Stderr, "publisher: --address, --topic and --count are required")
		flag.Usage()
		return 2
	}

	requests := make([]*eventbusv1.PublishRequest, 0, *count)
	for i := 1; i <= *count; i++ {
		userID := fmt.Sprintf("u-%s-%d", *runID, i)
		data, _ := json.Marshal(struct {
			UserID string `json:"user_id"`
			Email  string `json:"email"`
		}{userID, fmt.Sprintf("user%d@example.com", i)})
		requests = append(requests, &eventbusv1.PublishRequest{
			Topic:         *topic,
			Key:           userID,
			CorrelationId: strconv.Itoa(i),
			Event: &eventbusv1.Event{
				Id:              newUUID(),
				Type:            "user.registered",
				Source:          "//users/go",
				Subject:         "users/" + userID,
				DataContentType: "application/json",
				Data:            data,
				Extensions:      map[string]string{"runid": *runID},
			},
		})
	}

	conn, err := grpc.NewClient(*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "publisher: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := eventbusv1.NewEventBusClient(conn)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.PublishStream(ctx)
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(os.Stderr, "publisher: PublishStream failed: %s: %s\n", codeName(st.Code()), st.Message())
		return 1
	}
	// Send the batches, then half-close; the server answers every event and ends the stream.
	go func() {
		for start := 0; start < len(requests); start += batchSize {
			end := min(start+batchSize, len(requests))
			if err := stream.Send(&eventbusv1.PublishBatchRequest{Requests: requests[start:end]}); err != nil {
				return // the stream failed: Recv reports why
			}
		}
		stream.CloseSend()
	}()
	// Results may come in any order: match them by correlation_id.
	results := make(map[string]*eventbusv1.PublishResponse, len(requests))
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			st := status.Convert(err)
			fmt.Fprintf(os.Stderr, "publisher: PublishStream failed: %s: %s\n", codeName(st.Code()), st.Message())
			return 1
		}
		for _, r := range resp.Responses {
			results[r.CorrelationId] = r
		}
	}

	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	failed := 0
	for _, req := range requests {
		r, ok := results[req.CorrelationId]
		switch {
		case !ok:
			failed++
			fmt.Fprintf(os.Stderr, "publisher: no result for event %s (%s)\n", req.Event.Id, req.Key)
		case r.Status.GetCode() != 0:
			failed++
			fmt.Fprintf(os.Stderr, "publisher: event %s (%s) failed: %s: %s\n",
				req.Event.Id, req.Key, codeName(codes.Code(r.Status.GetCode())), r.Status.GetMessage())
		default:
			e := req.Event
			out.Encode(eventLine{
				ID: r.EventId, Type: e.Type, Source: e.Source, Subject: e.Subject,
				DataContentType: e.DataContentType, Data: string(e.Data), Extensions: e.Extensions,
				Key: req.Key, Partition: r.Partition, Offset: r.Offset,
			})
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "publisher: %d of %d events failed\n", failed, len(requests))
		return 1
	}
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// codeName is a gRPC status code's canonical name, e.g. INVALID_ARGUMENT.
func codeName(c codes.Code) string {
	names := [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
		"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	if int(c) < len(names) {
		return names[c]
	}
	return c.String()
}
