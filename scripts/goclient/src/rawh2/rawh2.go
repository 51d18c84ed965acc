// Package rawh2 speaks HTTP/2 frame by frame (Go's x/net/http2 framer) for the programs that
// drive a server the way broken or hostile clients do: any frame, any order, any bytes.
package rawh2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Conn is one HTTP/2 connection spoken frame by frame.
type Conn struct {
	Conn     net.Conn
	Framer   *http2.Framer
	endpoint string
	headers  bytes.Buffer
	encoder  *hpack.Encoder
	nextID   uint32
}

// Dial connects to `endpoint`, sends the client preface and a SETTINGS frame with the given
// initial stream window.
func Dial(endpoint string, initialWindow uint32) (*Conn, error) {
	conn, err := net.DialTimeout("tcp", endpoint, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Conn{Conn: conn, endpoint: endpoint, nextID: 1}
	c.Framer = http2.NewFramer(conn, conn)
	c.Framer.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.Framer.MaxHeaderListSize = 1 << 20
	c.encoder = hpack.NewEncoder(&c.headers)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Framer.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: initialWindow}); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Connect is Dial followed by Settings: a connection past the SETTINGS exchange.
func Connect(endpoint string, initialWindow uint32) (*Conn, error) {
	c, err := Dial(endpoint, initialWindow)
	if err != nil {
		return nil, err
	}
	if _, err := c.Settings(); err != nil {
		c.Conn.Close()
		return nil, err
	}
	return c, nil
}

// Settings reads up to the server's first SETTINGS frame, acknowledges it and returns its values.
func (c *Conn) Settings() (map[http2.SettingID]uint32, error) {
	values := map[http2.SettingID]uint32{}
	frame, err := c.ReadUntil(5*time.Second, false, func(f http2.Frame) bool {
		s, ok := f.(*http2.SettingsFrame)
		return ok && !s.IsAck()
	})
	if err != nil {
		return nil, err
	}
	frame.(*http2.SettingsFrame).ForeachSetting(func(s http2.Setting) error {
		values[s.ID] = s.Val
		return nil
	})
	return values, c.Framer.WriteSettingsAck()
}

// ReadUntil reads frames until one matches, at most `limit`. A well-behaved reader answers
// pings and gives back the flow-control window of the data it reads, as real clients do.
func (c *Conn) ReadUntil(limit time.Duration, wellBehaved bool, match func(http2.Frame) bool) (http2.Frame, error) {
	c.Conn.SetReadDeadline(time.Now().Add(limit))
	defer c.Conn.SetReadDeadline(time.Time{})
	for {
		frame, err := c.Framer.ReadFrame()
		if err != nil {
			return nil, err
		}
		if wellBehaved {
			if err := c.answer(frame); err != nil {
				return nil, err
			}
		}
		if match(frame) {
			return frame, nil
		}
	}
}

func (c *Conn) answer(frame http2.Frame) error {
	switch frame := frame.(type) {
	case *http2.PingFrame:
		if !frame.IsAck() {
			return c.Framer.WritePing(true, frame.Data)
		}
	case *http2.DataFrame:
		if n := uint32(len(frame.Data())); n > 0 {
			if err := c.Framer.WriteWindowUpdate(0, n); err != nil {
				return err
			}
			if !frame.StreamEnded() {
				return c.Framer.WriteWindowUpdate(frame.StreamID, n)
			}
		}
	}
	return nil
}

// NextStreamID is the ID the next Open uses.
func (c *Conn) NextStreamID() uint32 { return c.nextID }

// Open starts a gRPC call of `path` and returns its stream ID; `message`, when given, is sent
// gRPC-framed as the call's one request message, ending the request when `end` is set.
func (c *Conn) Open(path string, message []byte, end bool) (uint32, error) {
	id := c.nextID
	c.nextID += 2
	c.headers.Reset()
	for _, field := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", c.endpoint},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		c.encoder.WriteField(hpack.HeaderField{Name: field[0], Value: field[1]})
	}
	if err := c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headers.Bytes(), EndHeaders: true}); err != nil {
		return 0, err
	}
	if message == nil {
		return id, nil
	}
	return id, c.Framer.WriteData(id, end, Frame(message))
}

// Frame puts gRPC's 5-byte prefix (not compressed, the length) before `message`.
func Frame(message []byte) []byte {
	framed := make([]byte, 5+len(message))
	binary.BigEndian.PutUint32(framed[1:], uint32(len(message)))
	copy(framed[5:], message)
	return framed
}

// Status waits for the end of stream `id`: its trailers' grpc-status and grpc-message, or the
// code of the RST_STREAM that ended it.
func (c *Conn) Status(id uint32, limit time.Duration) (status string, message string, err error) {
	frame, err := c.ReadUntil(limit, true, func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id && h.StreamEnded() {
			return true
		}
		rst, ok := f.(*http2.RSTStreamFrame)
		return ok && rst.StreamID == id
	})
	if err != nil {
		return "", "", err
	}
	if rst, ok := frame.(*http2.RSTStreamFrame); ok {
		return "RST_STREAM " + rst.ErrCode.String(), "", nil
	}
	headers := frame.(*http2.MetaHeadersFrame)
	return HeaderValue(headers, "grpc-status"), HeaderValue(headers, "grpc-message"), nil
}

// HeaderValue is the value of header `name` in `h` ("" when absent).
func HeaderValue(h *http2.MetaHeadersFrame, name string) string {
	for _, f := range h.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Field encodes protobuf field `number` holding `value` (length-delimited).
func Field(number byte, value []byte) []byte {
	return append(append([]byte{number<<3 | 2}, Varint(len(value))...), value...)
}

// Varint is protobuf's encoding of `n`.
func Varint(n int) []byte {
	var out []byte
	for n >= 0x80 {
		out = append(out, byte(n)|0x80)
		n >>= 7
	}
	return append(out, byte(n))
}

// Describe names a frame for a report.
func Describe(f http2.Frame) string {
	return fmt.Sprintf("%v stream %d", f.Header().Type, f.Header().StreamID)
}
