"""``kubectl ctrfs``: ctrfs commands on a pod's container, run on the node the pod lives on.

The plugin talks to the cluster only through the user's own ``kubectl`` (its kubeconfig, context,
auth plugins and default namespace). It reads the pod (node, container IDs), then runs ctrfs on
that node with the container given by ID: in a short-lived node pod (ephemeral mode), or in the
node agent of the optional DaemonSet (agent mode, ``kubectl ctrfs deploy``).

Modules: ``kubectl`` (the one subprocess boundary and its error translation), ``pods`` (pod,
container and workload lookup), ``boot`` (the program that starts ctrfs.pyz on the node),
``node`` (ephemeral node pods and agents, one command's byte streams), ``fanout`` (many nodes or
pods, merged), ``manifests`` (the node pod and the DaemonSet as data), ``unpack`` (a tar stream
into a local directory), ``pyz`` (the ctrfs.pyz that goes to the node), ``main`` (the command line).
"""
