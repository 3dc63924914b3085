package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/apiclient"
)

func newApplyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Create or update resources from a YAML/JSON file (several documents allowed)",
		Args:  cobra.NoArgs,
	}
	server := serverFlag(cmd)
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file to apply, or - for standard input")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if file == "" {
			return fmt.Errorf("-f: required (a file, or - for standard input)")
		}
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		var out struct {
			Applied []struct {
				Kind, Namespace, Name, Result string
				Generation                    int64
			} `json:"applied"`
		}
		if err := apiclient.New(*server).Do(cmd.Context(), "POST", "/v1/apply", data, &out); err != nil {
			return err
		}
		for _, a := range out.Applied {
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s (generation %d)\n", strings.ToLower(a.Kind), a.Name, a.Result, a.Generation)
		}
		return nil
	}
	return cmd
}

func newGetCmd() *cobra.Command {
	var output, namespace string
	cmd := &cobra.Command{
		Use:   "get routes|trafficpolicies|instances|services|proxies [NAME]",
		Short: "Show resources, registered instances, services or connected proxies",
		Args:  cobra.RangeArgs(1, 2),
	}
	server := serverFlag(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: a table)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of a named resource (default \"default\")")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "" && output != "yaml" && output != "json" {
			return fmt.Errorf("-o: %q is not a format; use yaml or json", output)
		}
		what, ok := collection(args[0])
		if !ok {
			return fmt.Errorf("%q is not something trellis get shows; use routes, trafficpolicies, instances, services or proxies", args[0])
		}
		path := "/v1/" + what
		if len(args) == 2 {
			if what == "instances" || what == "proxies" {
				return fmt.Errorf("get %s takes no name (use get services NAME)", what)
			}
			path += "/" + url.PathEscape(args[1])
			if namespace != "" {
				path += "?namespace=" + url.QueryEscape(namespace)
			}
		}
		var raw json.RawMessage
		if err := apiclient.New(*server).Do(cmd.Context(), "GET", path, nil, &raw); err != nil {
			return err
		}
		return printResult(cmd.OutOrStdout(), what, len(args) == 2, raw, output)
	}
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete route|trafficpolicy NAME",
		Short: "Delete a resource",
		Args:  cobra.ExactArgs(2),
	}
	server := serverFlag(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		kind, ok := api.KindFor(args[0])
		if !ok {
			return fmt.Errorf("%q is not a kind trellis can delete; use route or trafficpolicy", args[0])
		}
		path := "/v1/" + kindCollections[kind] + "/" + url.PathEscape(args[1])
		if namespace != "" {
			path += "?namespace=" + url.QueryEscape(namespace)
		}
		if err := apiclient.New(*server).Do(cmd.Context(), "DELETE", path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s/%s deleted\n", strings.ToLower(kind), args[1])
		return nil
	}
	return cmd
}

// kindCollections maps each resource kind to its API collection.
var kindCollections = map[string]string{
	api.KindRoute:         "routes",
	api.KindTrafficPolicy: "trafficpolicies",
}

// collection maps a user's word to the API's collection name.
func collection(s string) (string, bool) {
	if kind, ok := api.KindFor(s); ok {
		return kindCollections[kind], true
	}
	switch strings.ToLower(s) {
	case "instance", "instances", "inst":
		return "instances", true
	case "service", "services", "svc":
		return "services", true
	case "proxy", "proxies":
		return "proxies", true
	}
	return "", false
}

// printResult shows an API answer as JSON, YAML or a table.
func printResult(w io.Writer, what string, single bool, raw json.RawMessage, output string) error {
	switch output {
	case "json":
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		_, err := fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		b, err := yaml.JSONToYAML(raw)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	// Table: a single object is shown as a one-row table.
	items := raw
	if !single {
		var list struct {
			Items json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		items = list.Items
	} else {
		items = json.RawMessage("[" + string(raw) + "]")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch what {
	case "routes":
		var rs []api.Route
		if err := json.Unmarshal(items, &rs); err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tNAMESPACE\tSERVICE\tGENERATION\tRULES")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Metadata.Name, r.Metadata.Namespace, r.Spec.Service, r.Metadata.Generation, summarizeRules(r.Spec.Rules))
		}
	case "trafficpolicies":
		var ps []api.TrafficPolicy
		if err := json.Unmarshal(items, &ps); err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tNAMESPACE\tSERVICE\tVERSION\tGENERATION\tLOAD BALANCER")
		for _, p := range ps {
			version := p.Spec.Version
			if version == "" {
				version = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Metadata.Name, p.Metadata.Namespace, p.Spec.Service, version, p.Metadata.Generation, summarizeLB(p.Spec.LoadBalancer))
		}
	case "instances":
		var is []api.Instance
		if err := json.Unmarshal(items, &is); err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tSERVICE\tVERSION\tADDRESS\tZONE")
		for _, i := range is {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\n", i.ID, i.Service, i.Version, i.Address, i.Port, i.Zone)
		}
	case "services":
		var ss []api.ServiceSummary
		if err := json.Unmarshal(items, &ss); err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tVERSIONS\tROUTE")
		for _, s := range ss {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, summarizeVersions(s.Versions), s.Route)
		}
	default: // proxies and anything without a table: indented JSON
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(tw, string(b))
	}
	return nil
}

// summarizeRules renders rules in one line: "v3 if gray=1 | debug=true; v1 80%, v2 20%".
func summarizeRules(rules []api.RouteRule) string {
	var matched, weighted []string
	for _, r := range rules {
		if r.Weight != nil {
			weighted = append(weighted, fmt.Sprintf("%s %d%%", r.Version, *r.Weight))
			continue
		}
		var ms []string
		for _, m := range r.Matches {
			ms = append(ms, summarizeMatch(m))
		}
		matched = append(matched, r.Version+" if "+strings.Join(ms, " | "))
	}
	parts := matched
	if len(weighted) > 0 {
		parts = append(parts, strings.Join(weighted, ", "))
	}
	return strings.Join(parts, "; ")
}

func summarizeMatch(m api.RouteMatch) string {
	var conds []string
	if m.Path != nil {
		conds = append(conds, "path"+summarizeString(*m.Path))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		conds = append(conds, k+summarizeString(m.Headers[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(m.QueryParams)) {
		conds = append(conds, "?"+k+summarizeString(m.QueryParams[k]))
	}
	return strings.Join(conds, " & ")
}

func summarizeString(s api.StringMatch) string {
	switch {
	case s.Present:
		return " present"
	case s.Prefix != "":
		return "=" + s.Prefix + "*"
	case s.Regex != "":
		return "~" + s.Regex
	}
	return "=" + s.Exact
}

func summarizeVersions(v map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		parts = append(parts, fmt.Sprintf("%s(%d)", k, v[k]))
	}
	return strings.Join(parts, " ")
}

// summarizeLB renders a load balancer in a few words: "consistentHash header x-user".
func summarizeLB(lb *api.LoadBalancer) string {
	switch {
	case lb == nil:
		return ""
	case lb.RoundRobin != nil:
		return "roundRobin"
	case lb.Random != nil:
		return "random"
	case lb.LeastRequest != nil:
		n := api.DefaultChoiceCount
		if lb.LeastRequest.ChoiceCount != nil {
			n = *lb.LeastRequest.ChoiceCount
		}
		return fmt.Sprintf("leastRequest of %d", n)
	case lb.ConsistentHash != nil:
		ch := lb.ConsistentHash
		switch {
		case ch.Header != "":
			return "consistentHash header " + ch.Header
		case ch.Cookie != nil:
			return "consistentHash cookie " + ch.Cookie.Name
		default:
			return "consistentHash sourceIP"
		}
	}
	return ""
}
