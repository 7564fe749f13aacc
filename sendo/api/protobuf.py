"""Decode Kubernetes protobuf request bodies into the JSON dicts the API works with.

kubectl's typed clients send `application/vnd.kubernetes.protobuf` bodies: the
generators (`kubectl create configmap|secret|deployment|service|job|cronjob|quota|role|…`),
`kubectl autoscale`, `create token`, `auth can-i|whoami`, `debug`, `create job --from`,
and the DeleteOptions of `kubectl drain --disable-eviction`. sendo is JSON inside, so
this module turns such a body into the dict a JSON client would have sent.

The body is the magic `k8s\\x00` followed by a `runtime.Unknown` message whose `raw`
bytes are the typed message named by its apiVersion/kind. One generic wire decoder walks
the bytes; the declarative tables below say, for each message type, what every field
number means. Field numbers and JSON names are facts of the Kubernetes wire format
(k8s.io/api and k8s.io/apimachinery). Unknown field numbers are skipped, so newer
clients keep working; a kind with no table is refused with `ProtobufError`, which the
API answers with 415 and advice to send JSON.

Go's JSON encoding is reproduced where it matters: zero scalars are left out unless
the Go field is a pointer or lacks `omitempty` (marked `!` in the tables, so
`replicas: 0` or `runAsUser: 0` survive), empty lists and maps are left out, nested
messages present on the wire are kept even when empty (`resources: {}`), bytes become
base64, `Time` becomes RFC 3339, `Quantity` and `IntOrString` become their JSON scalars.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..kinds.meta import rfc3339

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body cannot be decoded; the message tells the user what to send instead."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(f"sendo cannot decode this protobuf request body: {problem}; send the "
                         "object as JSON instead (for example `kubectl apply -f FILE`)")


def is_protobuf(content_type: str) -> bool:
    """True for `application/vnd.kubernetes.protobuf` (parameters ignored)."""
    return content_type.split(";")[0].strip().lower() == CONTENT_TYPE


# --------------------------------------------------------------------------- schema tables
#
# One entry per message type: whitespace-separated `number:jsonName[:type][*][!]`.
#   type   s (default) string · b bytes · i32 · i64 · bool · a message name
#          · {T} a map<string, T>
#   *      repeated
#   !      keep the zero value (Go pointer field, or a field without omitempty)
#   name - the message is inlined into its parent (Go `json:",inline"`)
# Types with a JSON form of their own (Time, Quantity, IntOrString, …) are in _SPECIAL.
# `Unread` stands for a status: kubectl never sets one, so it must arrive empty.

_TABLES: dict[str, str] = {
    # --- k8s.io/apimachinery meta/v1, resource, intstr
    "ObjectMeta": """1:name 2:generateName 3:namespace 4:selfLink 5:uid 6:resourceVersion
        7:generation:i64 8:creationTimestamp:Time 9:deletionTimestamp:Time
        10:deletionGracePeriodSeconds:i64! 11:labels:{s} 12:annotations:{s}
        13:ownerReferences:OwnerReference* 14:finalizers* 17:managedFields:ManagedFieldsEntry*""",
    "OwnerReference": "5:apiVersion! 1:kind! 3:name! 4:uid! 6:controller:bool! 7:blockOwnerDeletion:bool!",
    "ManagedFieldsEntry": """1:manager 2:operation 3:apiVersion 4:time:Time 6:fieldsType
        7:fieldsV1:FieldsV1 8:subresource""",
    "FieldsV1": "1:raw!",  # the field set, as JSON text
    "LabelSelector": "1:matchLabels:{s} 2:matchExpressions:LabelSelectorRequirement*",
    "LabelSelectorRequirement": "1:key! 2:operator! 3:values*",
    "DeleteOptions": """1:gracePeriodSeconds:i64! 2:preconditions:Preconditions 3:orphanDependents:bool!
        4:propagationPolicy! 5:dryRun* 6:ignoreStoreReadErrorWithClusterBreakingPotential:bool!""",
    "Preconditions": "1:uid! 2:resourceVersion!",
    "Time": "1:seconds:i64! 2:nanos:i32!",
    "Quantity": "1:string!",
    "IntOrString": "1:type:i64! 2:intVal:i32! 3:strVal!",
    "Unread": "",

    # --- core/v1: pods and what they contain
    "Pod": "1:metadata:ObjectMeta 2:spec:PodSpec 3:status:Unread",
    "PodTemplateSpec": "1:metadata:ObjectMeta 2:spec:PodSpec",
    "PodSpec": """1:volumes:Volume* 20:initContainers:Container* 2:containers:Container*
        34:ephemeralContainers:EphemeralContainer* 3:restartPolicy
        4:terminationGracePeriodSeconds:i64! 5:activeDeadlineSeconds:i64! 6:dnsPolicy
        7:nodeSelector:{s} 8:serviceAccountName 9:serviceAccount
        21:automountServiceAccountToken:bool! 10:nodeName 11:hostNetwork:bool 12:hostPID:bool
        13:hostIPC:bool 27:shareProcessNamespace:bool! 14:securityContext:PodSecurityContext
        15:imagePullSecrets:LocalObjectReference* 16:hostname 17:subdomain 18:affinity:Affinity
        19:schedulerName 22:tolerations:Toleration* 23:hostAliases:HostAlias*
        24:priorityClassName 25:priority:i32! 26:dnsConfig:PodDNSConfig
        28:readinessGates:PodReadinessGate* 29:runtimeClassName! 30:enableServiceLinks:bool!
        31:preemptionPolicy! 32:overhead:{Quantity}
        33:topologySpreadConstraints:TopologySpreadConstraint* 35:setHostnameAsFQDN:bool!
        36:os:PodOS 37:hostUsers:bool! 38:schedulingGates:PodSchedulingGate*
        39:resourceClaims:PodResourceClaim* 40:resources:ResourceRequirements
        41:hostnameOverride!""",
    "Container": """1:name! 2:image 3:command* 4:args* 5:workingDir 6:ports:ContainerPort*
        19:envFrom:EnvFromSource* 7:env:EnvVar* 8:resources:ResourceRequirements
        23:resizePolicy:ContainerResizePolicy* 24:restartPolicy!
        25:restartPolicyRules:ContainerRestartRule* 9:volumeMounts:VolumeMount*
        21:volumeDevices:VolumeDevice* 10:livenessProbe:Probe 11:readinessProbe:Probe
        22:startupProbe:Probe 12:lifecycle:Lifecycle 13:terminationMessagePath
        20:terminationMessagePolicy 14:imagePullPolicy 15:securityContext:SecurityContext
        16:stdin:bool 17:stdinOnce:bool 18:tty:bool""",
    # EphemeralContainerCommon carries exactly Container's fields, inlined.
    "EphemeralContainer": "1:-:Container 2:targetContainerName",
    "ContainerPort": "1:name 2:hostPort:i32 3:containerPort:i32! 4:protocol 5:hostIP",
    "ContainerResizePolicy": "1:resourceName! 2:restartPolicy!",
    "ContainerRestartRule": "1:action 2:exitCodes:ContainerRestartRuleOnExitCodes",
    "ContainerRestartRuleOnExitCodes": "1:operator 2:values:i32*",
    "EnvVar": "1:name! 2:value 3:valueFrom:EnvVarSource",
    "EnvVarSource": """1:fieldRef:ObjectFieldSelector 2:resourceFieldRef:ResourceFieldSelector
        3:configMapKeyRef:ConfigMapKeySelector 4:secretKeyRef:SecretKeySelector
        5:fileKeyRef:FileKeySelector""",
    "ObjectFieldSelector": "1:apiVersion 2:fieldPath!",
    "ResourceFieldSelector": "1:containerName 2:resource! 3:divisor:Quantity",
    "ConfigMapKeySelector": "1:-:LocalObjectReference 2:key! 3:optional:bool!",
    "SecretKeySelector": "1:-:LocalObjectReference 2:key! 3:optional:bool!",
    "FileKeySelector": "1:volumeName! 2:path! 3:key! 4:optional:bool!",
    "EnvFromSource": "1:prefix 2:configMapRef:ConfigMapEnvSource 3:secretRef:SecretEnvSource",
    "ConfigMapEnvSource": "1:-:LocalObjectReference 2:optional:bool!",
    "SecretEnvSource": "1:-:LocalObjectReference 2:optional:bool!",
    "LocalObjectReference": "1:name",
    "ResourceRequirements": "1:limits:{Quantity} 2:requests:{Quantity} 3:claims:ResourceClaim*",
    "ResourceClaim": "1:name! 2:request",
    "VolumeMount": """1:name! 2:readOnly:bool 7:recursiveReadOnly! 3:mountPath! 4:subPath
        5:mountPropagation! 6:subPathExpr 8:bindMountOptions*""",
    "VolumeDevice": "1:name! 2:devicePath!",
    "Probe": """1:-:ProbeHandler 2:initialDelaySeconds:i32 3:timeoutSeconds:i32
        4:periodSeconds:i32 5:successThreshold:i32 6:failureThreshold:i32
        7:terminationGracePeriodSeconds:i64!""",
    "ProbeHandler": "1:exec:ExecAction 2:httpGet:HTTPGetAction 3:tcpSocket:TCPSocketAction 4:grpc:GRPCAction",
    "ExecAction": "1:command*",
    "HTTPGetAction": """1:path 2:port:IntOrString 3:host 4:scheme 5:httpHeaders:HTTPHeader*
        6:protocol!""",
    "HTTPHeader": "1:name! 2:value!",
    "TCPSocketAction": "1:port:IntOrString 2:host",
    "GRPCAction": "1:port:i32! 2:service! 3:mode!",
    "Lifecycle": "1:postStart:LifecycleHandler 2:preStop:LifecycleHandler 3:stopSignal!",
    "LifecycleHandler": """1:exec:ExecAction 2:httpGet:HTTPGetAction 3:tcpSocket:TCPSocketAction
        4:sleep:SleepAction""",
    "SleepAction": "1:seconds:i64!",
    "SecurityContext": """1:capabilities:Capabilities 2:privileged:bool! 3:seLinuxOptions:SELinuxOptions
        10:windowsOptions:WindowsSecurityContextOptions 4:runAsUser:i64! 8:runAsGroup:i64!
        5:runAsNonRoot:bool! 6:readOnlyRootFilesystem:bool! 7:allowPrivilegeEscalation:bool!
        9:procMount! 11:seccompProfile:SeccompProfile 12:appArmorProfile:AppArmorProfile""",
    "Capabilities": "1:add* 2:drop*",
    "SELinuxOptions": "1:user 2:role 3:type 4:level",
    "WindowsSecurityContextOptions": """1:gmsaCredentialSpecName! 2:gmsaCredentialSpec!
        3:runAsUserName! 4:hostProcess:bool!""",
    "SeccompProfile": "1:type! 2:localhostProfile!",
    "AppArmorProfile": "1:type! 2:localhostProfile!",
    "PodSecurityContext": """1:seLinuxOptions:SELinuxOptions 8:windowsOptions:WindowsSecurityContextOptions
        2:runAsUser:i64! 6:runAsGroup:i64! 3:runAsNonRoot:bool! 4:supplementalGroups:i64*
        12:supplementalGroupsPolicy! 5:fsGroup:i64! 7:sysctls:Sysctl* 9:fsGroupChangePolicy!
        10:seccompProfile:SeccompProfile 11:appArmorProfile:AppArmorProfile
        13:seLinuxChangePolicy!""",
    "Sysctl": "1:name! 2:value!",
    "Affinity": "1:nodeAffinity:NodeAffinity 2:podAffinity:PodAffinity 3:podAntiAffinity:PodAffinity",
    "NodeAffinity": """1:requiredDuringSchedulingIgnoredDuringExecution:NodeSelector
        2:preferredDuringSchedulingIgnoredDuringExecution:PreferredSchedulingTerm*""",
    "NodeSelector": "1:nodeSelectorTerms:NodeSelectorTerm*",
    "NodeSelectorTerm": "1:matchExpressions:NodeSelectorRequirement* 2:matchFields:NodeSelectorRequirement*",
    "NodeSelectorRequirement": "1:key! 2:operator! 3:values*",
    "PreferredSchedulingTerm": "1:weight:i32! 2:preference:NodeSelectorTerm",
    # PodAntiAffinity has the same fields as PodAffinity.
    "PodAffinity": """1:requiredDuringSchedulingIgnoredDuringExecution:PodAffinityTerm*
        2:preferredDuringSchedulingIgnoredDuringExecution:WeightedPodAffinityTerm*""",
    "PodAffinityTerm": """1:labelSelector:LabelSelector 2:namespaces* 3:topologyKey!
        4:namespaceSelector:LabelSelector 5:matchLabelKeys* 6:mismatchLabelKeys*""",
    "WeightedPodAffinityTerm": "1:weight:i32! 2:podAffinityTerm:PodAffinityTerm",
    "Toleration": "1:key 2:operator 3:value 4:effect 5:tolerationSeconds:i64!",
    "HostAlias": "1:ip! 2:hostnames*",
    "PodDNSConfig": "1:nameservers* 2:searches* 3:options:PodDNSConfigOption*",
    "PodDNSConfigOption": "1:name 2:value!",
    "PodReadinessGate": "1:conditionType!",
    "TopologySpreadConstraint": """1:maxSkew:i32! 2:topologyKey! 3:whenUnsatisfiable!
        4:labelSelector:LabelSelector 5:minDomains:i32! 6:nodeAffinityPolicy!
        7:nodeTaintsPolicy! 8:matchLabelKeys*""",
    "PodOS": "1:name!",
    "PodSchedulingGate": "1:name!",
    "PodResourceClaim": "1:name! 3:resourceClaimName! 4:resourceClaimTemplateName!",

    # --- core/v1: volumes
    "Volume": "1:name! 2:-:VolumeSource",
    "VolumeSource": """1:hostPath:HostPathVolumeSource 2:emptyDir:EmptyDirVolumeSource
        6:secret:SecretVolumeSource 7:nfs:NFSVolumeSource
        10:persistentVolumeClaim:PersistentVolumeClaimVolumeSource
        16:downwardAPI:DownwardAPIVolumeSource 19:configMap:ConfigMapVolumeSource
        26:projected:ProjectedVolumeSource 28:csi:CSIVolumeSource
        29:ephemeral:EphemeralVolumeSource 30:image:ImageVolumeSource""",
    "HostPathVolumeSource": "1:path! 2:type!",
    "EmptyDirVolumeSource": "1:medium 2:sizeLimit:Quantity 3:mode:i32!",
    "SecretVolumeSource": """1:secretName 2:items:KeyToPath* 3:defaultMode:i32! 4:optional:bool!
        5:defaultUser:i64!""",
    "ConfigMapVolumeSource": """1:-:LocalObjectReference 2:items:KeyToPath* 3:defaultMode:i32!
        4:optional:bool! 5:defaultUser:i64!""",
    "KeyToPath": "1:key! 2:path! 3:mode:i32! 4:user:i64!",
    "NFSVolumeSource": "1:server! 2:path! 3:readOnly:bool",
    "PersistentVolumeClaimVolumeSource": "1:claimName! 2:readOnly:bool",
    "DownwardAPIVolumeSource": "1:items:DownwardAPIVolumeFile* 2:defaultMode:i32! 3:defaultUser:i64!",
    "DownwardAPIVolumeFile": """1:path! 2:fieldRef:ObjectFieldSelector
        3:resourceFieldRef:ResourceFieldSelector 4:mode:i32! 5:user:i64!""",
    "ProjectedVolumeSource": "1:sources:VolumeProjection* 2:defaultMode:i32! 3:defaultUser:i64!",
    "VolumeProjection": """1:secret:SecretProjection 2:downwardAPI:DownwardAPIProjection
        3:configMap:ConfigMapProjection 4:serviceAccountToken:ServiceAccountTokenProjection
        5:clusterTrustBundle:ClusterTrustBundleProjection""",
    "SecretProjection": "1:-:LocalObjectReference 2:items:KeyToPath* 4:optional:bool!",
    "ConfigMapProjection": "1:-:LocalObjectReference 2:items:KeyToPath* 4:optional:bool!",
    "DownwardAPIProjection": "1:items:DownwardAPIVolumeFile*",
    "ServiceAccountTokenProjection": "1:audience 2:expirationSeconds:i64! 3:path! 4:user:i64!",
    "ClusterTrustBundleProjection": """1:name! 2:signerName! 3:labelSelector:LabelSelector
        5:optional:bool! 4:path! 6:user:i64!""",
    "CSIVolumeSource": """1:driver! 2:readOnly:bool! 3:fsType! 4:volumeAttributes:{s}
        5:nodePublishSecretRef:LocalObjectReference""",
    "EphemeralVolumeSource": "1:volumeClaimTemplate:PersistentVolumeClaimTemplate",
    "PersistentVolumeClaimTemplate": "1:metadata:ObjectMeta 2:spec:PersistentVolumeClaimSpec",
    "ImageVolumeSource": "1:reference 2:pullPolicy",

    # --- core/v1: other kinds
    "ConfigMap": "1:metadata:ObjectMeta 4:immutable:bool! 2:data:{s} 3:binaryData:{b}",
    "Secret": "1:metadata:ObjectMeta 5:immutable:bool! 2:data:{b} 4:stringData:{s} 3:type",
    "Namespace": "1:metadata:ObjectMeta 2:spec:NamespaceSpec 3:status:Unread",
    "NamespaceSpec": "1:finalizers*",
    "ServiceAccount": """1:metadata:ObjectMeta 2:secrets:ObjectReference*
        3:imagePullSecrets:LocalObjectReference* 4:automountServiceAccountToken:bool!""",
    "ObjectReference": "1:kind 2:namespace 3:name 4:uid 5:apiVersion 6:resourceVersion 7:fieldPath",
    "Service": "1:metadata:ObjectMeta 2:spec:ServiceSpec 3:status:Unread",
    "ServiceSpec": """1:ports:ServicePort* 2:selector:{s} 3:clusterIP 18:clusterIPs* 4:type
        5:externalIPs* 7:sessionAffinity 8:loadBalancerIP 9:loadBalancerSourceRanges*
        10:externalName 11:externalTrafficPolicy 12:healthCheckNodePort:i32
        13:publishNotReadyAddresses:bool 14:sessionAffinityConfig:SessionAffinityConfig
        19:ipFamilies* 17:ipFamilyPolicy! 20:allocateLoadBalancerNodePorts:bool!
        21:loadBalancerClass! 22:internalTrafficPolicy! 23:trafficDistribution!""",
    "ServicePort": "1:name 2:protocol 6:appProtocol! 3:port:i32! 4:targetPort:IntOrString 5:nodePort:i32",
    "SessionAffinityConfig": "1:clientIP:ClientIPConfig",
    "ClientIPConfig": "1:timeoutSeconds:i32!",
    "ResourceQuota": "1:metadata:ObjectMeta 2:spec:ResourceQuotaSpec 3:status:Unread",
    "ResourceQuotaSpec": "1:hard:{Quantity} 2:scopes* 3:scopeSelector:ScopeSelector",
    "ScopeSelector": "1:matchExpressions:ScopedResourceSelectorRequirement*",
    "ScopedResourceSelectorRequirement": "1:scopeName! 2:operator! 3:values*",
    "LimitRange": "1:metadata:ObjectMeta 2:spec:LimitRangeSpec",
    "LimitRangeSpec": "1:limits:LimitRangeItem*",
    "LimitRangeItem": """1:type! 2:max:{Quantity} 3:min:{Quantity} 4:default:{Quantity}
        5:defaultRequest:{Quantity} 6:maxLimitRequestRatio:{Quantity}""",
    "PersistentVolumeClaim": "1:metadata:ObjectMeta 2:spec:PersistentVolumeClaimSpec 3:status:Unread",
    "PersistentVolumeClaimSpec": """1:accessModes* 4:selector:LabelSelector
        2:resources:VolumeResourceRequirements 3:volumeName 5:storageClassName! 6:volumeMode!
        7:dataSource:TypedLocalObjectReference 8:dataSourceRef:TypedObjectReference
        9:volumeAttributesClassName!""",
    "VolumeResourceRequirements": "1:limits:{Quantity} 2:requests:{Quantity}",
    "TypedLocalObjectReference": "1:apiGroup! 2:kind! 3:name!",
    "TypedObjectReference": "1:apiGroup! 2:kind! 3:name! 4:namespace!",
    "Binding": "1:metadata:ObjectMeta 2:target:ObjectReference",

    # --- apps/v1
    "Deployment": "1:metadata:ObjectMeta 2:spec:DeploymentSpec 3:status:Unread",
    "DeploymentSpec": """1:replicas:i32! 2:selector:LabelSelector 3:template:PodTemplateSpec
        4:strategy:DeploymentStrategy 5:minReadySeconds:i32 6:revisionHistoryLimit:i32!
        7:paused:bool 9:progressDeadlineSeconds:i32!""",
    "DeploymentStrategy": "1:type 2:rollingUpdate:RollingUpdateDeployment",
    "RollingUpdateDeployment": "1:maxUnavailable:IntOrString 2:maxSurge:IntOrString",

    # --- batch/v1
    "Job": "1:metadata:ObjectMeta 2:spec:JobSpec 3:status:Unread",
    "JobSpec": """1:parallelism:i32! 2:completions:i32! 3:activeDeadlineSeconds:i64!
        11:podFailurePolicy:PodFailurePolicy 16:successPolicy:SuccessPolicy 7:backoffLimit:i32!
        12:backoffLimitPerIndex:i32! 13:maxFailedIndexes:i32! 4:selector:LabelSelector
        5:manualSelector:bool! 6:template:PodTemplateSpec 8:ttlSecondsAfterFinished:i32!
        9:completionMode! 10:suspend:bool! 14:podReplacementPolicy! 15:managedBy!""",
    "PodFailurePolicy": "1:rules:PodFailurePolicyRule*",
    "PodFailurePolicyRule": """1:action! 2:onExitCodes:PodFailurePolicyOnExitCodesRequirement
        3:onPodConditions:PodFailurePolicyOnPodConditionsPattern*""",
    "PodFailurePolicyOnExitCodesRequirement": "1:containerName! 2:operator! 3:values:i32*",
    "PodFailurePolicyOnPodConditionsPattern": "1:type! 2:status!",
    "SuccessPolicy": "1:rules:SuccessPolicyRule*",
    "SuccessPolicyRule": "1:succeededIndexes! 2:succeededCount:i32!",
    "CronJob": "1:metadata:ObjectMeta 2:spec:CronJobSpec 3:status:Unread",
    "CronJobSpec": """1:schedule! 8:timeZone! 2:startingDeadlineSeconds:i64! 3:concurrencyPolicy
        4:suspend:bool! 5:jobTemplate:JobTemplateSpec 6:successfulJobsHistoryLimit:i32!
        7:failedJobsHistoryLimit:i32!""",
    "JobTemplateSpec": "1:metadata:ObjectMeta 2:spec:JobSpec",

    # --- rbac.authorization.k8s.io/v1
    "Role": "1:metadata:ObjectMeta 2:rules:PolicyRule*",
    "ClusterRole": "1:metadata:ObjectMeta 2:rules:PolicyRule* 3:aggregationRule:AggregationRule",
    "AggregationRule": "1:clusterRoleSelectors:LabelSelector*",
    "PolicyRule": "1:verbs* 2:apiGroups* 3:resources* 4:resourceNames* 5:nonResourceURLs*",
    "RoleBinding": "1:metadata:ObjectMeta 2:subjects:Subject* 3:roleRef:RoleRef",
    "Subject": "1:kind! 2:apiGroup 3:name! 4:namespace",
    "RoleRef": "1:apiGroup! 2:kind! 3:name!",

    # --- scheduling, policy, networking, autoscaling
    "PriorityClass": "1:metadata:ObjectMeta 2:value:i32! 3:globalDefault:bool 4:description 5:preemptionPolicy!",
    "PodDisruptionBudget": "1:metadata:ObjectMeta 2:spec:PodDisruptionBudgetSpec 3:status:Unread",
    "PodDisruptionBudgetSpec": """1:minAvailable:IntOrString 2:selector:LabelSelector
        3:maxUnavailable:IntOrString 4:unhealthyPodEvictionPolicy!""",
    "Eviction": "1:metadata:ObjectMeta 2:deleteOptions:DeleteOptions",
    "Ingress": "1:metadata:ObjectMeta 2:spec:IngressSpec 3:status:Unread",
    "IngressSpec": "4:ingressClassName! 1:defaultBackend:IngressBackend 2:tls:IngressTLS* 3:rules:IngressRule*",
    "IngressBackend": "4:service:IngressServiceBackend 3:resource:TypedLocalObjectReference",
    "IngressServiceBackend": "1:name! 2:port:ServiceBackendPort",
    "ServiceBackendPort": "1:name 2:number:i32",
    "IngressTLS": "1:hosts* 2:secretName",
    "IngressRule": "1:host 2:-:IngressRuleValue",
    "IngressRuleValue": "1:http:HTTPIngressRuleValue",
    "HTTPIngressRuleValue": "1:paths:HTTPIngressPath*",
    "HTTPIngressPath": "1:path 3:pathType! 2:backend:IngressBackend",
    "HorizontalPodAutoscalerV1": "1:metadata:ObjectMeta 2:spec:HPASpecV1 3:status:Unread",
    "HPASpecV1": """1:scaleTargetRef:CrossVersionObjectReference 2:minReplicas:i32! 3:maxReplicas:i32!
        4:targetCPUUtilizationPercentage:i32!""",
    "CrossVersionObjectReference": "1:kind! 2:name! 3:apiVersion",
    "HorizontalPodAutoscalerV2": "1:metadata:ObjectMeta 2:spec:HPASpecV2 3:status:Unread",
    "HPASpecV2": """1:scaleTargetRef:CrossVersionObjectReference 2:minReplicas:i32! 3:maxReplicas:i32!
        4:metrics:MetricSpec* 5:behavior:HorizontalPodAutoscalerBehavior""",
    "MetricSpec": """1:type! 2:object:ObjectMetricSource 3:pods:PodsMetricSource
        4:resource:ResourceMetricSource 7:containerResource:ContainerResourceMetricSource
        5:external:ExternalMetricSource""",
    "ObjectMetricSource": "1:describedObject:CrossVersionObjectReference 2:target:MetricTarget 3:metric:MetricIdentifier",
    "PodsMetricSource": "1:metric:MetricIdentifier 2:target:MetricTarget",
    "ExternalMetricSource": "1:metric:MetricIdentifier 2:target:MetricTarget",
    "MetricIdentifier": "1:name! 2:selector:LabelSelector",
    "ResourceMetricSource": "1:name! 2:target:MetricTarget",
    "ContainerResourceMetricSource": "1:name! 2:target:MetricTarget 3:container!",
    "MetricTarget": "1:type! 2:value:Quantity 3:averageValue:Quantity 4:averageUtilization:i32!",
    "HorizontalPodAutoscalerBehavior": "1:scaleUp:HPAScalingRules 2:scaleDown:HPAScalingRules",
    "HPAScalingRules": """3:stabilizationWindowSeconds:i32! 1:selectPolicy! 2:policies:HPAScalingPolicy*
        4:tolerance:Quantity""",
    "HPAScalingPolicy": "1:type! 2:value:i32! 3:periodSeconds:i32!",

    # --- authentication.k8s.io/v1, authorization.k8s.io/v1
    "TokenRequest": "1:metadata:ObjectMeta 2:spec:TokenRequestSpec 3:status:Unread",
    "TokenRequestSpec": "1:audiences* 4:expirationSeconds:i64! 3:boundObjectRef:BoundObjectReference",
    "BoundObjectReference": "1:kind 2:apiVersion 3:name 4:uid",
    "SelfSubjectReview": "1:metadata:ObjectMeta 2:status:Unread",
    "SelfSubjectAccessReview": "1:metadata:ObjectMeta 2:spec:SelfSubjectAccessReviewSpec 3:status:Unread",
    "SelfSubjectAccessReviewSpec": "1:resourceAttributes:ResourceAttributes 2:nonResourceAttributes:NonResourceAttributes",
    "ResourceAttributes": """1:namespace 2:verb 3:group 4:version 5:resource 6:subresource 7:name
        8:fieldSelector:FieldSelectorAttributes 9:labelSelector:LabelSelectorAttributes""",
    "FieldSelectorAttributes": "1:rawSelector 2:requirements:FieldSelectorRequirement*",
    "FieldSelectorRequirement": "1:key! 2:operator! 3:values*",
    "LabelSelectorAttributes": "1:rawSelector 2:requirements:LabelSelectorRequirement*",
    "NonResourceAttributes": "1:path 2:verb",
    "SelfSubjectRulesReview": "1:metadata:ObjectMeta 2:spec:SelfSubjectRulesReviewSpec 3:status:Unread",
    "SelfSubjectRulesReviewSpec": "1:namespace",

    # --- certificates.k8s.io/v1 (`kubectl certificate approve|deny` sends the whole object;
    # the requester fields 2-4 and 6 are the server's to set, so they are not read)
    "CertificateSigningRequest": """1:metadata:ObjectMeta 2:spec:CertificateSigningRequestSpec
        3:status:CertificateSigningRequestStatus""",
    "CertificateSigningRequestSpec": "1:request:b 7:signerName 8:expirationSeconds:i32 5:usages*",
    "CertificateSigningRequestStatus": "1:conditions:CertificateSigningRequestCondition* 2:certificate:b",
    "CertificateSigningRequestCondition": """1:type! 6:status! 2:reason 3:message 4:lastUpdateTime:Time
        5:lastTransitionTime:Time""",
}

# apiVersion/kind → top-level message. DeleteOptions is accepted under any apiVersion,
# because clients stamp it with the group version of the resource being deleted.
KINDS: dict[tuple[str, str], str] = {
    **{("v1", k): k for k in ("Pod", "ConfigMap", "Secret", "Namespace", "ServiceAccount", "Service",
                              "ResourceQuota", "LimitRange", "PersistentVolumeClaim", "Binding")},
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",  # same fields
    ("scheduling.k8s.io/v1", "PriorityClass"): "PriorityClass",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("policy/v1", "Eviction"): "Eviction",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscalerV1",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "HorizontalPodAutoscalerV2",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "CertificateSigningRequest",
}
ANY_VERSION_KINDS = {"DeleteOptions": "DeleteOptions"}


# --------------------------------------------------------------------------- table parsing

_VARINT_KINDS = {"i32", "i64", "bool"}
_SCALAR_KINDS = _VARINT_KINDS | {"s", "b"}
_ZERO: dict[str, Any] = {"s": "", "b": "", "i32": 0, "i64": 0, "bool": False}


@dataclass(frozen=True)
class Field:
    name: str           # JSON name; "-" = inline into the parent
    kind: str           # scalar kind or message name
    repeated: bool = False
    map: bool = False   # map<string, kind>
    keep: bool = False  # keep the zero value


_TOKEN = re.compile(r"(\d+):(-|\w+)(?::(\{)?(\w+)\}?)?(\*)?(!)?")


def _parse_tables(tables: dict[str, str]) -> dict[str, dict[int, Field]]:
    schema: dict[str, dict[int, Field]] = {}
    for msg, spec in tables.items():
        fields: dict[int, Field] = {}
        for tok in spec.split():
            m = _TOKEN.fullmatch(tok)
            if not m:
                raise AssertionError(f"bad schema token {tok!r} in {msg}")
            num, name, brace, kind, star, bang = m.groups()
            fields[int(num)] = Field(name, kind or "s", bool(star), bool(brace), bool(bang))
        schema[msg] = fields
    for msg, fields in schema.items():
        for f in fields.values():
            if f.kind not in _SCALAR_KINDS and f.kind not in schema:
                raise AssertionError(f"{msg}.{f.name} refers to unknown type {f.kind}")
    return schema


SCHEMA = _parse_tables(_TABLES)


# --------------------------------------------------------------------------- wire decoder

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) — an int for varints, bytes otherwise."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ProtobufError("field number 0")
        val: int | bytes
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt in (1, 5, 2):
            if wt == 2:
                n, pos = _varint(buf, pos)
            else:
                n = 8 if wt == 1 else 4
            if pos + n > end:
                raise ProtobufError(f"field {num} runs past the end of its message")
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ProtobufError(f"unsupported wire type {wt} (field {num})")
        yield num, wt, val


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, wt: int, val: int | bytes, where: str) -> Any:
    want = 0 if kind in _VARINT_KINDS else 2
    if wt != want:
        raise ProtobufError(f"{where} has wire type {wt}, expected {want}")
    if kind in ("i32", "i64"):
        return _signed64(val)  # type: ignore[arg-type]
    if kind == "bool":
        return val != 0
    if kind == "b":
        return base64.b64encode(val).decode()  # type: ignore[arg-type]
    try:
        return val.decode()  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise ProtobufError(f"{where} is not valid UTF-8") from None


def _packed(kind: str, buf: bytes, where: str) -> list[Any]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(_scalar(kind, 0, v, where))
    return out


def _value(f: Field, wt: int, val: int | bytes, where: str) -> Any:
    if f.kind in _SCALAR_KINDS:
        return _scalar(f.kind, wt, val, where)
    if wt != 2:
        raise ProtobufError(f"{where} has wire type {wt}, expected a message")
    return decode_message(val, f.kind)  # type: ignore[arg-type]


def _map_entry(f: Field, buf: bytes, where: str) -> tuple[str, Any]:
    key, value = "", None
    for num, wt, val in fields(buf):
        if num == 1:
            key = _scalar("s", wt, val, where + " key")
        elif num == 2:
            value = _value(Field("value", f.kind), wt, val, f"{where}[{key}]")
    if value is None:  # absent value = the zero value of its type
        value = _ZERO[f.kind] if f.kind in _ZERO else decode_message(b"", f.kind)
    return key, value


def decode_message(buf: bytes, msg: str) -> Any:
    """Decode one message of type `msg` into its JSON form (a dict, or a scalar for _SPECIAL)."""
    if msg == "Unread":
        _check_unread(buf)
        return {}
    schema = SCHEMA[msg]
    seen: dict[int, Any] = {}
    for num, wt, val in fields(buf):
        f = schema.get(num)
        if f is None:
            continue  # a field newer than our tables: skip it
        where = f"{msg}.{f.name}"
        if f.map:
            if wt != 2:
                raise ProtobufError(f"{where} has wire type {wt}, expected a map entry")
            k, v = _map_entry(f, val, where)  # type: ignore[arg-type]
            seen.setdefault(num, {})[k] = v
        elif f.repeated:
            items = seen.setdefault(num, [])
            if wt == 2 and f.kind in _VARINT_KINDS:
                items.extend(_packed(f.kind, val, where))  # type: ignore[arg-type]
            else:
                items.append(_value(f, wt, val, where))
        else:
            seen[num] = _value(f, wt, val, where)
    if msg in _SPECIAL:
        return _SPECIAL[msg](seen)
    out: dict[str, Any] = {}
    for num, f in schema.items():  # table order = Go struct order, like Go's JSON
        if num not in seen:
            continue
        v = seen[num]
        if f.name == "-":
            out.update(v)
        elif f.kind in _SCALAR_KINDS and not f.repeated and not f.map:
            if f.keep or v != _ZERO[f.kind]:
                out[f.name] = v
        elif f.repeated or f.map:
            if v:
                out[f.name] = v
        elif v is not None:  # a nested message: Go keeps it even when empty
            out[f.name] = v
    return out


# --------------------------------------------------------------------------- special types

def _time(seen: dict[int, Any]) -> str | None:
    """metav1.Time prints as RFC 3339 in UTC, whole seconds."""
    if not seen:
        return None  # Go encodes the zero Time as an empty message; JSON omits it
    secs = seen.get(1, 0)
    try:
        return rfc3339(secs)
    except (OverflowError, OSError, ValueError):
        raise ProtobufError(f"timestamp {secs} is out of range") from None


def _quantity(seen: dict[int, Any]) -> str:
    if 1 not in seen:
        raise ProtobufError("a resource quantity has no value")
    return seen[1]


def _int_or_string(seen: dict[int, Any]) -> int | str:
    return seen.get(3, "") if seen.get(1, 0) == 1 else seen.get(2, 0)


def _fields_v1(seen: dict[int, Any]) -> Any:
    try:
        return json.loads(seen.get(1) or "{}")
    except ValueError:
        raise ProtobufError("managedFields fieldsV1 is not JSON") from None


# Messages whose JSON form is a scalar or free-form; each gets the raw field values.
_SPECIAL: dict[str, Callable[[dict[int, Any]], Any]] = {
    "Time": _time,
    "Quantity": _quantity,
    "IntOrString": _int_or_string,
    "FieldsV1": _fields_v1,
}


def _check_unread(buf: bytes, depth: int = 0) -> None:
    """A status we do not decode must hold only zero values (what kubectl sends).

    Without a schema a length-delimited field may be a string or a message, so it
    counts as empty only if it parses as a message of zero values; anything else is
    refused rather than silently dropped.
    """
    refused = ProtobufError("the object has a status, which sendo does not read from protobuf")
    try:
        for _num, wt, val in fields(buf):
            if wt in (1, 5) or (wt == 0 and val != 0) or depth > 20:
                raise refused
            if wt == 2 and val:
                _check_unread(val, depth + 1)  # type: ignore[arg-type]
    except ProtobufError:
        raise refused from None


# --------------------------------------------------------------------------- envelope

def decode(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\x00` + runtime.Unknown body into the object's Kubernetes JSON form."""
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise ProtobufError("it does not start with the Kubernetes protobuf magic k8s\\x00")
    api_version = kind = encoding = ""
    raw = b""
    for num, wt, val in fields(body[len(MAGIC):]):
        if wt != 2:
            raise ProtobufError(f"runtime.Unknown field {num} has wire type {wt}")
        if num == 1:  # runtime.TypeMeta: apiVersion = 1, kind = 2
            for n, w, v in fields(val):  # type: ignore[arg-type]
                if n in (1, 2):
                    s = _scalar("s", w, v, "typeMeta")
                    api_version, kind = (s, kind) if n == 1 else (api_version, s)
        elif num == 2:
            raw = val  # type: ignore[assignment]
        elif num == 3:
            encoding = _scalar("s", wt, val, "contentEncoding")
    if encoding:
        raise ProtobufError(f"content encoding {encoding!r} is not supported")
    if not kind or not api_version:
        raise ProtobufError("its envelope names no apiVersion and kind")
    msg = KINDS.get((api_version, kind)) or ANY_VERSION_KINDS.get(kind)
    if msg is None:
        raise ProtobufError(f"sendo has no protobuf schema for {api_version} {kind}")
    obj = decode_message(raw, msg)
    return {"kind": kind, "apiVersion": api_version, **obj}
