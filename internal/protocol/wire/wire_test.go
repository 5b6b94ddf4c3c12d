package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
	"testing/iotest"
)

func sample() [][]byte {
	var frames [][]byte
	add := func(b []byte) { frames = append(frames, b) }
	add(AppendPublish(nil, &Publish{Priority: 4, Topic: []byte("events.process.lifecycle"), Payload: []byte("pid=1")}))
	add(AppendPublish(nil, &Publish{Ack: true, AckID: 77, Topic: []byte("control.collector.procmond"), Reply: []byte("control.inbox.c1.9"), Payload: nil}))
	add(AppendDeliver(nil, &Deliver{SID: 3, Seq: 1 << 40, Priority: 2, Topic: []byte("events.a"), Payload: bytes.Repeat([]byte{0xAB}, 300)}))
	add(AppendDeliver(nil, &Deliver{SID: 9, Seq: 1, Topic: []byte("control.inbox.x"), Reply: []byte{}, Payload: []byte("r")}))
	add(AppendSubscribe(nil, &Subscribe{SID: 5, Overflow: 3, MaxMessages: 10, MaxBytes: 1 << 33, BlockTimeoutMs: 250, Pattern: []byte("events.#"), QueueGroup: []byte("workers")}))
	add(AppendU32(nil, TypeUnsubscribe, 5))
	add(AppendU64(nil, TypeAck, 77))
	add(AppendU64(nil, TypePing, 0xFEED))
	add(AppendU64(nil, TypePong, 0xFEED))
	add(AppendError(nil, TypeError, &ErrorBody{Code: CodeInvalidTopic, Ref: 5, Text: []byte(`invalid pattern "events.*"`)}))
	add(AppendError(nil, TypeGoAway, &ErrorBody{Code: CodeShutdown, Text: []byte("draining")}))
	add(AppendHello(nil, &Hello{Versions: []Version{{1, 3}, {2, 0}}, Capabilities: 5, AuthMethod: AuthToken, Credential: []byte("s3cret"), ClientName: []byte("procmond")}))
	add(AppendWelcome(nil, &Welcome{Version: Version{1, 0}, Capabilities: 1, SessionID: []byte("sess-1"), Identity: []byte("uid:0"), MaxPayload: 1 << 20, MaxPending: 64 << 20, PingIntervalMs: 30000}))
	return frames
}

// parse decodes a frame body by type and re-encodes it, for round trips.
func reencode(f Frame) ([]byte, error) {
	switch f.Type {
	case TypePublish:
		p, err := ParsePublish(f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendPublish(nil, &p), nil
	case TypeDeliver:
		d, err := ParseDeliver(f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendDeliver(nil, &d), nil
	case TypeSubscribe:
		s, err := ParseSubscribe(f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendSubscribe(nil, &s), nil
	case TypeUnsubscribe:
		v, err := ParseU32(f.Type, f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendU32(nil, f.Type, v), nil
	case TypeAck, TypePing, TypePong:
		v, err := ParseU64(f.Type, f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendU64(nil, f.Type, v), nil
	case TypeHello:
		h, err := ParseHello(f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendHello(nil, &h), nil
	case TypeWelcome:
		w, err := ParseWelcome(f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendWelcome(nil, &w), nil
	case TypeError, TypeGoAway:
		e, err := ParseError(f.Type, f.Flags, f.Body)
		if err != nil {
			return nil, err
		}
		return AppendError(nil, f.Type, &e), nil
	}
	return AppendFrame(nil, f.Type, f.Flags, f.Body), nil
}

func TestRoundTrip(t *testing.T) {
	frames := sample()
	stream := bytes.Join(frames, nil)
	// One byte at a time exercises every partial-read path.
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one-byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		r := NewReader(src, 0)
		for i, want := range frames {
			f, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			got, err := reencode(f)
			if err != nil {
				t.Fatalf("%s: frame %d (%s): %v", name, i, f.Type, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: frame %d (%s) re-encodes differently:\n got %x\nwant %x", name, i, f.Type, got, want)
			}
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Errorf("%s: after the last frame: %v, want io.EOF", name, err)
		}
	}
}

func TestParsedFields(t *testing.T) {
	b := AppendPublish(nil, &Publish{Priority: 3, Ack: true, AckID: 9, Topic: []byte("events.a"), Reply: []byte("control.r"), Payload: []byte("x")})
	f, err := NewReader(bytes.NewReader(b), 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublish(f.Flags, f.Body)
	want := Publish{Priority: 3, Ack: true, AckID: 9, Topic: []byte("events.a"), Reply: []byte("control.r"), Payload: []byte("x")}
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("ParsePublish = %+v, %v; want %+v", p, err, want)
	}
	p2, _ := ParsePublish(0, AppendPublish(nil, &Publish{Topic: []byte("events.a")})[HeaderSize:])
	if p2.Reply != nil {
		t.Error("a publish without reply decodes with a non-nil Reply")
	}
}

// frameWith builds a frame and lets the test corrupt it.
func frameWith(mutate func([]byte) []byte) []byte {
	return mutate(AppendU64(nil, TypePing, 1))
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"bad checksum", frameWith(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrBadChecksum},
		{"bad checksum in header", frameWith(func(b []byte) []byte { b[8] ^= 0x80; return b }), ErrBadChecksum},
		{"over the limit", frameWith(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 8+DefaultMaxBody+1); return b }), ErrFrameTooLarge},
		{"4 GiB length", frameWith(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 0xFFFFFFFF); return b }), ErrFrameTooLarge},
		{"length under header", frameWith(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 3); return b }), ErrMalformed},
		{"unknown type", frameWith(func(b []byte) []byte { b[4] = 200; return b }), ErrUnknownType},
		{"type zero", frameWith(func(b []byte) []byte { b[4] = 0; return b }), ErrUnknownType},
		{"reserved bytes", frameWith(func(b []byte) []byte { b[6] = 1; return b }), ErrMalformed},
		{"truncated body", frameWith(func(b []byte) []byte { return b[:len(b)-3] }), io.ErrUnexpectedEOF},
		{"truncated header", []byte{0, 0, 0, 16, 8}, io.ErrUnexpectedEOF},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrFrameTooLarge},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.input), 0).ReadFrame()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ReadFrame = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestMalformedBodies(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"publish truncated topic", func() error {
			_, err := ParsePublish(0, []byte{0, 10, 'e'})
			return err
		}()},
		{"publish bad priority", func() error { _, err := ParsePublish(5, []byte{0, 0}); return err }()},
		{"publish unknown flag", func() error { _, err := ParsePublish(0x80, []byte{0, 0}); return err }()},
		{"deliver short", func() error { _, err := ParseDeliver(0, []byte{1, 2, 3}); return err }()},
		{"subscribe bad overflow", func() error {
			b := AppendSubscribe(nil, &Subscribe{Overflow: 9, Pattern: []byte("#")})
			_, err := ParseSubscribe(0, b[HeaderSize:])
			return err
		}()},
		{"subscribe trailing bytes", func() error {
			b := AppendSubscribe(nil, &Subscribe{Pattern: []byte("#")})
			_, err := ParseSubscribe(0, append(b[HeaderSize:], 0))
			return err
		}()},
		{"ping short", func() error { _, err := ParseU64(TypePing, 0, []byte{1}); return err }()},
		{"unsubscribe long", func() error { _, err := ParseU32(TypeUnsubscribe, 0, make([]byte, 5)); return err }()},
		{"error short", func() error { _, err := ParseError(TypeError, 0, []byte{0}); return err }()},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tt.name, tt.err)
		}
	}
}

// A declared length over the limit must be refused before any memory is
// set aside for it: a 2 GiB header costs only the small error value.
// MemStats counts every goroutine's allocations, so the least of a few
// tries is taken: a background allocation cannot hide in all of them.
func TestOversizeDoesNotAllocate(t *testing.T) {
	b := frameWith(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 0x7FFFFFFF); return b })
	least := ^uint64(0)
	for range 5 {
		r := NewReader(bytes.NewReader(b), 0)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := r.ReadFrame()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
		if len(r.buf) > 4096 {
			t.Fatalf("buffer %d bytes after an oversize header", len(r.buf))
		}
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > 4096 {
		t.Errorf("allocated %d bytes after an oversize header", least)
	}
}

// FuzzReader feeds arbitrary bytes to the reader and the body parsers:
// nothing may panic, and every frame that decodes must re-encode to the
// same bytes.
func FuzzReader(f *testing.F) {
	for _, fr := range sample() {
		f.Add(fr)
	}
	f.Add(bytes.Join(sample(), nil))
	f.Add([]byte{0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 1<<16)
		off := 0
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			raw := data[off : off+HeaderSize+len(fr.Body)]
			off += len(raw)
			got, err := reencode(fr)
			if err != nil {
				continue // a well-framed but malformed body is an error, not a panic
			}
			if fr.Type == TypeHello || fr.Type == TypeWelcome {
				// These ignore fields a later minor version appends, so
				// only the re-encoding must be stable.
				g, err := NewReader(bytes.NewReader(got), 1<<16).ReadFrame()
				if err != nil {
					t.Fatalf("re-encoded %s frame does not decode: %v", fr.Type, err)
				}
				if again, err := reencode(g); err != nil || !bytes.Equal(again, got) {
					t.Fatalf("%s frame re-encoding is not stable: %v", fr.Type, err)
				}
				continue
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("%s frame re-encodes differently:\n got %x\nwant %x", fr.Type, got, raw)
			}
		}
	})
}

func BenchmarkAppendPublish(b *testing.B) {
	p := &Publish{Topic: []byte("events.process.lifecycle"), Payload: make([]byte, 128)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Payload)))
	for b.Loop() {
		buf = AppendPublish(buf[:0], p)
	}
}

// loopReader serves the same bytes forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func BenchmarkReadPublish(b *testing.B) {
	frame := AppendPublish(nil, &Publish{Topic: []byte("events.process.lifecycle"), Payload: make([]byte, 128)})
	r := NewReader(&loopReader{data: bytes.Repeat(frame, 64)}, 0)
	b.ReportAllocs()
	b.SetBytes(128)
	for b.Loop() {
		f, err := r.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParsePublish(f.Flags, f.Body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func TestAppendPublishMsgMatchesAppendPublish(t *testing.T) {
	for _, p := range []Publish{
		{Topic: []byte("events.a"), Payload: []byte("p")},
		{Priority: 3, Ack: true, AckID: 1<<63 | 7, Topic: []byte("control.svc"), Reply: []byte("control.inbox.x.7"), Payload: []byte("req")},
		{Ack: true, ErrorsOnly: true, AckID: 9, Topic: []byte("control.svc"), Reply: []byte("control.inbox.x.9")},
	} {
		mode := AckNone
		if p.Ack {
			mode = AckAll
			if p.ErrorsOnly {
				mode = AckErrors
			}
		}
		a := AppendPublishMsg(nil, p.Priority, mode, p.AckID, string(p.Topic), string(p.Reply), p.Payload)
		if b := AppendPublish(nil, &p); !bytes.Equal(a, b) {
			t.Errorf("AppendPublishMsg %x != AppendPublish %x", a, b)
		}
	}
	var a []byte
	if n := testing.AllocsPerRun(100, func() {
		a = AppendPublishMsg(a[:0], 2, AckAll, 9, "events.a.rather.long.topic.name.over.32.bytes", "control.inbox.x", []byte("p"))
	}); n != 0 {
		t.Errorf("AppendPublishMsg allocates %v times", n)
	}
}

func TestAppendDeliverMsgMatchesAppendDeliver(t *testing.T) {
	a := AppendDeliverMsg(nil, 3, 9, 4, "events.a", "", []byte("p"))
	b := AppendDeliver(nil, &Deliver{SID: 3, Seq: 9, Priority: 4, Topic: []byte("events.a"), Payload: []byte("p")})
	if !bytes.Equal(a, b) {
		t.Errorf("AppendDeliverMsg %x != AppendDeliver %x", a, b)
	}
	a = AppendDeliverMsg(nil, 3, 9, 4, "events.a", "control.inbox.x", []byte("p"))
	b = AppendDeliver(nil, &Deliver{SID: 3, Seq: 9, Priority: 4, Topic: []byte("events.a"), Reply: []byte("control.inbox.x"), Payload: []byte("p")})
	if !bytes.Equal(a, b) {
		t.Errorf("with a reply: AppendDeliverMsg %x != AppendDeliver %x", a, b)
	}
	if n := testing.AllocsPerRun(100, func() { a = AppendDeliverMsg(a[:0], 3, 9, 4, "events.a", "control.inbox.x", []byte("p")) }); n != 0 {
		t.Errorf("AppendDeliverMsg allocates %v times", n)
	}
}

// A Reader whose stream keeps its buffer full reads more per call: its
// buffer grows from 4 KiB to maxReadBuf, and no further for small frames.
func TestReaderGrowsItsBufferUnderLoad(t *testing.T) {
	var stream []byte
	for stream = nil; len(stream) < 1<<20; {
		stream = AppendPublish(stream, &Publish{Topic: []byte("events.a"), Payload: make([]byte, 128)})
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for {
		if _, err := r.ReadFrame(); err != nil {
			break
		}
	}
	if len(r.buf) != maxReadBuf {
		t.Errorf("buffer is %d bytes after a busy stream, want %d", len(r.buf), maxReadBuf)
	}
}

func TestErrorsOnlyNeedsAck(t *testing.T) {
	if _, err := ParsePublish(FlagErrorsOnly, appendBytes16(nil, []byte("events.a"))); !errors.Is(err, ErrMalformed) {
		t.Errorf("errors-only without ack: %v, want ErrMalformed", err)
	}
}
