package nf

// State is a flow's state as the policy's `state` match sees it.
type State uint8

const (
	StateNew State = iota
	StateEstablished
	StateRelated
	StateInvalid
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateEstablished:
		return "established"
	case StateRelated:
		return "related"
	case StateInvalid:
		return "invalid"
	}
	return "unknown"
}
