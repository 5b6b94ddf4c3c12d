// Package protofill sets every field of a protobuf message to a non-zero
// value, through reflection, for round-trip tests that must cover fields
// added later without anyone remembering to add them to a test. For tests
// only.
package protofill

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Filler sets every field of a message to a non-zero value.
//
// A message can set only one field of each oneof: each time the filler
// meets a oneof, it sets the case after the one it set the previous time,
// so filling messages repeatedly sets every case of every oneof in turn.
// Recursive well-known types (google.protobuf.Struct, Value, ListValue) stop
// nesting at maxDepth.
type Filler struct {
	// Choice varies the values from one Filler to the next.
	Choice int
	// Set records every field the Filler set, by full name, across calls.
	Set map[protoreflect.FullName]bool
	// next is the case each oneof sets next time.
	next map[protoreflect.FullName]int
}

const maxDepth = 10

// New returns a Filler.
func New() *Filler {
	return &Filler{Set: map[protoreflect.FullName]bool{}, next: map[protoreflect.FullName]int{}}
}

// Fill sets every field of m (one case of each oneof: the next one each
// time the Filler meets that oneof).
func (f *Filler) Fill(m protoreflect.Message) { f.fillDepth(m, 0) }

func (f *Filler) fillDepth(m protoreflect.Message, depth int) {
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		m.Set(md.Fields().ByName("seconds"), protoreflect.ValueOfInt64(1_763_900_000+int64(f.Choice)))
		m.Set(md.Fields().ByName("nanos"), protoreflect.ValueOfInt32(123_456_789))
		return
	case "google.protobuf.Duration":
		m.Set(md.Fields().ByName("seconds"), protoreflect.ValueOfInt64(42+int64(f.Choice)))
		m.Set(md.Fields().ByName("nanos"), protoreflect.ValueOfInt32(500_000_000))
		return
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			continue
		}
		if fd.Message() != nil && depth >= maxDepth {
			continue
		}
		f.setField(m, fd, depth)
	}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		od := oneofs.Get(i)
		if od.IsSynthetic() {
			continue
		}
		cases := od.Fields()
		fd := cases.Get(f.next[od.FullName()] % cases.Len())
		f.next[od.FullName()]++
		if fd.Message() != nil && depth >= maxDepth {
			// Stop the recursion with a scalar case, if there is one.
			fd = nil
			for j := range cases.Len() {
				if cases.Get(j).Message() == nil {
					fd = cases.Get(j)
					break
				}
			}
			if fd == nil {
				continue
			}
		}
		f.setField(m, fd, depth)
	}
}

func (f *Filler) setField(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	f.Set[fd.FullName()] = true
	switch {
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		for i := range 2 {
			k := f.mapKey(fd.MapKey(), i)
			if fd.MapValue().Message() != nil {
				v := mp.NewValue()
				f.fillDepth(v.Message(), depth+1)
				mp.Set(k, v)
			} else {
				mp.Set(k, f.scalar(fd.MapValue(), i))
			}
		}
	case fd.IsList():
		l := m.Mutable(fd).List()
		for i := range 2 {
			if fd.Message() != nil {
				v := l.NewElement()
				f.fillDepth(v.Message(), depth+1)
				l.Append(v)
			} else {
				l.Append(f.scalar(fd, i))
			}
		}
	case fd.Message() != nil:
		v := m.NewField(fd)
		f.fillDepth(v.Message(), depth+1)
		m.Set(fd, v)
	default:
		m.Set(fd, f.scalar(fd, 0))
	}
}

func (f *Filler) mapKey(fd protoreflect.FieldDescriptor, i int) protoreflect.MapKey {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(i == 0).MapKey()
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("key%d", i)).MapKey()
	}
	return f.scalar(fd, i).MapKey()
}

// scalar returns a non-zero value of fd's kind that differs by field
// number and by i, so swapped fields or elements do not compare equal.
func (f *Filler) scalar(fd protoreflect.FieldDescriptor, i int) protoreflect.Value {
	n := int64(fd.Number())*10 + int64(i) + 1
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		// The first non-zero value (NullValue has only zero).
		return protoreflect.ValueOfEnum(vals.Get(min(1+i, vals.Len()-1)).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n << 33)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n) << 33)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d-%d", fd.Name(), i, f.Choice))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(n), byte(i), 0xff, byte(f.Choice)})
	}
	panic(fmt.Sprintf("filler: unhandled kind %v of %s", fd.Kind(), fd.FullName()))
}
