// Prints the JSON field names of the configuration kinds kubefab renders, read by reflection from the
// Kubernetes API types of the module version being built: the reference kubefab's templates are checked
// against, per minor. Copied into the kubernetes_server build module by playbooks/source.py.
package main

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"

	kubelet "k8s.io/kubelet/config/v1beta1"
	proxy "k8s.io/kube-proxy/config/v1alpha1"
	scheduler "k8s.io/kube-scheduler/config/v1"
)

// fields lists a struct's JSON keys, recursing into nested structs as "parent.child"; inlined members
// (TypeMeta) are flattened into their parent.
func fields(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() == "k8s.io/apimachinery/pkg/apis/meta/v1" && t.Name() != "TypeMeta" {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name := strings.Split(tag, ",")[0]
		if strings.Contains(tag, ",inline") || (f.Anonymous && name == "") {
			fields(f.Type, prefix, out)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out[prefix+name] = true
		fields(f.Type, prefix+name+".", out)
	}
}

func keys(v any) []string {
	out := map[string]bool{}
	fields(reflect.TypeOf(v), "", out)
	list := make([]string, 0, len(out))
	for k := range out {
		list = append(list, k)
	}
	sort.Strings(list)
	return list
}

func main() {
	doc := map[string][]string{
		"KubeletConfiguration":       keys(kubelet.KubeletConfiguration{}),
		"KubeProxyConfiguration":     keys(proxy.KubeProxyConfiguration{}),
		"KubeSchedulerConfiguration": keys(scheduler.KubeSchedulerConfiguration{}),
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		os.Exit(1)
	}
}
