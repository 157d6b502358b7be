package deploy

import (
	"fmt"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one resource of a kustomize build, as JSON.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	JSON       []byte
}

// ID names the object in messages: "apps/v1/Deployment/echo".
func (o Object) ID() string { return o.APIVersion + "/" + o.Kind + "/" + o.Name }

// Build runs `kustomize build dir` in-process on fs (nil: the real disk).
func Build(fs filesys.FileSystem, dir string) ([]Object, error) {
	if fs == nil {
		fs = filesys.MakeFsOnDisk()
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []Object
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, Object{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), JSON: b})
	}
	return objs, nil
}
