package api

import (
	"strings"
	"testing"
)

func TestValidateInstance(t *testing.T) {
	good := Instance{ID: "reviews.v1.ab12", Service: "reviews", Version: "v1", Address: "10.0.0.7", Port: 9080, Zone: "eu-1a"}
	tests := []struct {
		name   string
		edit   func(*Instance)
		errHas string // "" means valid
	}{
		{"valid", func(*Instance) {}, ""},
		{"valid ipv6", func(i *Instance) { i.Address = "::1" }, ""},
		{"valid no version or zone", func(i *Instance) { i.Version, i.Zone = "", "" }, ""},
		{"address not an ip", func(i *Instance) { i.Address = "not-an-ip" }, `address: "not-an-ip" is not an IP address`},
		{"address a hostname", func(i *Instance) { i.Address = "example.com" }, "address:"},
		{"address empty", func(i *Instance) { i.Address = "" }, "address:"},
		{"address with port", func(i *Instance) { i.Address = "10.0.0.7:80" }, "address:"},
		{"address unspecified", func(i *Instance) { i.Address = "0.0.0.0" }, "cannot be reached"},
		{"address unspecified v6", func(i *Instance) { i.Address = "::" }, "cannot be reached"},
		{"address multicast", func(i *Instance) { i.Address = "224.0.0.1" }, "multicast"},
		{"address v6 zone", func(i *Instance) { i.Address = "fe80::1%eth0" }, "IPv6 zone"},
		{"port zero", func(i *Instance) { i.Port = 0 }, "port: 0 out of range"},
		{"port too big", func(i *Instance) { i.Port = 70000 }, "port: 70000"},
		{"port negative", func(i *Instance) { i.Port = -1 }, "port: -1"},
		{"service empty", func(i *Instance) { i.Service = "" }, "service: required"},
		{"service upper", func(i *Instance) { i.Service = "Reviews" }, "service:"},
		{"service slash", func(i *Instance) { i.Service = "a/b" }, "service:"},
		{"version bad", func(i *Instance) { i.Version = "v 1" }, "version:"},
		{"zone bad", func(i *Instance) { i.Zone = "zone\n" }, "zone:"},
		{"zone too long", func(i *Instance) { i.Zone = strings.Repeat("z", 64) }, "zone:"},
		{"id empty", func(i *Instance) { i.ID = "" }, "id: required"},
		{"id slash", func(i *Instance) { i.ID = "a/b" }, "id:"},
		{"id control", func(i *Instance) { i.ID = "a\x00b" }, "id:"},
		{"id too long", func(i *Instance) { i.ID = strings.Repeat("i", 254) }, "id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := good
			tt.edit(&inst)
			err := ValidateInstance(inst)
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("want error containing %q, got %v", tt.errHas, err)
			}
		})
	}
}
