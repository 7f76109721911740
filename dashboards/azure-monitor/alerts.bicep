// Azure Monitor log search alerts: the alerts of dashboards/prometheus/alerts.yml, over the Application
// Insights tables the chain's spans land in (workspace-based: AppRequests for SERVER spans,
// AppDependencies for CLIENT and INTERNAL spans). Each query is a file in alerts/; a row it returns is a
// failing dimension. `for` becomes failing periods: every evaluation in the span must fail.
//   az deployment group create -g <rg> -f dashboards/azure-monitor/alerts.bicep \
//     -p workspaceId=<Log Analytics workspace resource id> actionGroupId=<action group resource id>

@description('Resource ID of the Log Analytics workspace of the (workspace-based) Application Insights resource.')
param workspaceId string

@description('Resource ID of the action group to notify; empty for none.')
param actionGroupId string = ''

param location string = resourceGroup().location
param namePrefix string = 'fllm-callstack'

var alerts = [
  {
    name: 'HopServerErrorRatioHigh'
    severity: 1
    summary: 'A hop fails more than 5% of a route\'s requests.'
    runbook: 'Failed hops queries (queries/failed-hops.kql): open ExampleOperationId with queries/trace-by-operation-id.kql, read the exception, check the hop and its next hop.'
    query: loadTextContent('alerts/HopServerErrorRatioHigh.kql')
    measure: 'ErrorRatio'
    aggregation: 'Maximum'
    threshold: json('0.05')
    dimensions: [{name: 'Hop', operator: 'Include', values: ['*']}, {name: 'Name', operator: 'Include', values: ['*']}]
    window: 'PT5M'
    frequency: 'PT1M'
    periods: 5
  }
  {
    name: 'HopClientErrorRatioHigh'
    severity: 1
    summary: 'Calls from one hop to the next fail (4xx/5xx, refused, timed out).'
    runbook: 'Is the callee up and healthy? A failed dependency without a request under it in the trace never arrived.'
    query: loadTextContent('alerts/HopClientErrorRatioHigh.kql')
    measure: 'ErrorRatio'
    aggregation: 'Maximum'
    threshold: json('0.05')
    dimensions: [{name: 'Hop', operator: 'Include', values: ['*']}, {name: 'Callee', operator: 'Include', values: ['*']}]
    window: 'PT5M'
    frequency: 'PT1M'
    periods: 5
  }
  {
    name: 'CodeExecutionLatencyP95High'
    severity: 2
    summary: 'p95 of code executions above 30 s.'
    runbook: 'queries/code-execution-latency.kql: execution time or overhead? Cold starts mean the warm pool is too small.'
    query: loadTextContent('alerts/CodeExecutionLatencyP95High.kql')
    measure: 'P95Ms'
    aggregation: 'Maximum'
    threshold: 30000
    dimensions: [{name: 'Hop', operator: 'Include', values: ['*']}]
    window: 'PT10M'
    frequency: 'PT5M'
    periods: 2
  }
  {
    name: 'HopStoppedReporting'
    severity: 2
    summary: 'A hop that is being called reports no requests.'
    runbook: 'Check the hop\'s container and logs, and its APPLICATIONINSIGHTS_CONNECTION_STRING or OTLP endpoint.'
    query: loadTextContent('alerts/HopStoppedReporting.kql')
    measure: ''
    aggregation: 'Count'
    threshold: 0
    dimensions: [{name: 'Hop', operator: 'Include', values: ['*']}]
    window: 'PT10M'
    frequency: 'PT5M'
    periods: 2
  }
  {
    name: 'ChainFailureRatioHigh'
    severity: 1
    summary: 'More than 5% of completions fail end to end.'
    runbook: 'queries/failed-hops.kql names the failing hop (foundationallm.failed_hop); follow its hop alerts and traces.'
    query: loadTextContent('alerts/ChainFailureRatioHigh.kql')
    measure: 'FailureRatio'
    aggregation: 'Maximum'
    threshold: json('0.05')
    dimensions: []
    window: 'PT10M'
    frequency: 'PT5M'
    periods: 2
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for alert in alerts: {
  name: '${namePrefix}-${alert.name}'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: alert.name
    description: '${alert.summary} Runbook: ${alert.runbook}'
    severity: alert.severity
    enabled: true
    scopes: [workspaceId]
    evaluationFrequency: alert.frequency
    windowSize: alert.window
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: alert.aggregation
          metricMeasureColumn: empty(alert.measure) ? null : alert.measure
          dimensions: alert.dimensions
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: alert.periods
            minFailingPeriodsToAlert: alert.periods
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(actionGroupId) ? [] : [actionGroupId]
      customProperties: {
        runbook: alert.runbook
      }
    }
  }
}]

output ruleIds array = [for (alert, i) in alerts: rules[i].id]
