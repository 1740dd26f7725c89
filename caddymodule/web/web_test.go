package web

import "testing"

func TestHalfSurrogate(t *testing.T) {
	for _, tt := range []struct {
		name, json string
		half       bool
	}{
		{"no escapes", `{"a":"b"}`, false},
		{"plain escapes", `{"a":"\n\t\"\u00e9"}`, false},
		{"a whole pair", `{"a":"\ud83d\ude00"}`, false},
		{"a whole pair in capitals", `{"a":"\uD83D\uDE00"}`, false},
		{"high half alone", `{"a":"\ud83d"}`, true},
		{"high half before a letter", `{"a":"\ud83dx"}`, true},
		{"high half before another escape", `{"a":"\ud83d\n"}`, true},
		{"two high halves", `{"a":"\ud83d\ud83d"}`, true},
		{"low half alone", `{"a":"\ude00"}`, true},
		{"low half before high half", `{"a":"\ude00\ud83d"}`, true},
		{"escaped backslash, then text", `{"a":"\\ud800"}`, false},
		{"escaped backslash, then an escape", `{"a":"\\\ud800"}`, true},
		{"in a member name", `{"\udfff":"b"}`, true},
		{"cut short", `\ud83d\ude0`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := halfSurrogate([]byte(tt.json)); got != tt.half {
				t.Fatalf("halfSurrogate(%s) = %v", tt.json, got)
			}
		})
	}
}
