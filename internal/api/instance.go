package api

import (
	"fmt"
	"net/netip"
	"regexp"
)

// zoneLabel is what a zone may look like: "eu-west-1a", "rack_3", "dc1/row2".
var zoneLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$`)

// ValidateInstance checks an instance as it is about to enter the registry.
// Everything a proxy would reject in an endpoint is refused here, so one bad
// registration cannot make every proxy reject its endpoint updates. Errors
// name the field and the reason.
func ValidateInstance(inst Instance) error {
	switch {
	case inst.ID == "":
		return fmt.Errorf("id: required")
	case len(inst.ID) > 253:
		return fmt.Errorf("id: longer than 253 characters")
	case !printableNoSlash(inst.ID):
		return fmt.Errorf("id: %q may hold only printable ASCII characters other than '/'", inst.ID)
	}
	if err := validateName("service", inst.Service); err != nil {
		return err
	}
	if inst.Version != "" {
		if len(inst.Version) > 63 || !versionLabel.MatchString(inst.Version) {
			return fmt.Errorf("version: %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", inst.Version)
		}
	}
	if inst.Zone != "" {
		if len(inst.Zone) > 63 || !zoneLabel.MatchString(inst.Zone) {
			return fmt.Errorf("zone: %q must be at most 63 letters, digits, '-', '_', '.' or '/', starting and ending with a letter or digit", inst.Zone)
		}
	}
	ip, err := netip.ParseAddr(inst.Address)
	switch {
	case err != nil:
		return fmt.Errorf("address: %q is not an IP address", inst.Address)
	case ip.Zone() != "":
		return fmt.Errorf("address: %q has an IPv6 zone, which peers cannot use", inst.Address)
	case ip.IsUnspecified():
		return fmt.Errorf("address: %s cannot be reached by peers; give the host's IP", inst.Address)
	case ip.IsMulticast():
		return fmt.Errorf("address: %s is a multicast address", inst.Address)
	}
	if inst.Port < 1 || inst.Port > 65535 {
		return fmt.Errorf("port: %d out of range 1..65535", inst.Port)
	}
	return nil
}

func printableNoSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}
