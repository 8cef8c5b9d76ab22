import { DataQuery, DataSourceJsonData } from '@grafana/schema';

/** The query types the backend answers (plugin/pkg/plugin/datasource.go). */
export type QueryType =
  | 'incidents'
  | 'annotations'
  | 'runbooks'
  | 'anomalies'
  | 'forecasts'
  | 'logs'
  | 'traces'
  | 'serviceGraph';

/** A query's JSON model; the backend's Query reads the same keys. */
export interface AiopsQuery extends DataQuery {
  queryType?: QueryType;
  service?: string;
  /** incidents, annotations, runbooks: open, acknowledged or resolved */
  status?: string;
  /** incidents, annotations, runbooks: info, warning or critical */
  severity?: string;
  /** runbooks: the runbook whose runs to list */
  runbook?: string;
  /** anomalies, forecasts: a label selector such as {aiops_metric="…"} */
  selector?: string;
  /** anomalies: the lowest score to list */
  minScore?: string;
  /** logs */
  contains?: string;
  regexp?: string;
  minSeverity?: string;
  /** logs, traces */
  traceId?: string;
  /** incidents, annotations, runbooks (incidents read), anomalies, logs: most rows (0: the backend's default) */
  limit?: number;
}

export const DEFAULT_QUERY: Partial<AiopsQuery> = { queryType: 'incidents' };

/** The data source's jsonData. The URL is the data source's own URL field. */
export interface AiopsOptions extends DataSourceJsonData {
  /** Bounds each request to aiops; the backend defaults to 30. */
  timeoutSeconds?: number;
}

/** The data source's secureJsonData: Grafana keeps it encrypted and hands it to the backend only. */
export interface AiopsSecureOptions {
  token?: string;
}

/** The string fields of a query, which may hold template variables. */
export const TEXT_FIELDS = [
  'service',
  'status',
  'severity',
  'runbook',
  'selector',
  'minScore',
  'contains',
  'regexp',
  'minSeverity',
  'traceId',
] as const;

export type TextField = (typeof TEXT_FIELDS)[number];

/** The fields each query type reads, in the order the editor shows them. */
export const QUERY_FIELDS: Record<QueryType, ReadonlyArray<TextField | 'limit'>> = {
  incidents: ['service', 'status', 'severity', 'limit'],
  annotations: ['service', 'status', 'severity', 'limit'],
  runbooks: ['service', 'status', 'severity', 'runbook', 'limit'],
  anomalies: ['selector', 'service', 'minScore', 'limit'],
  forecasts: ['selector', 'service'],
  logs: ['service', 'minSeverity', 'contains', 'regexp', 'traceId', 'limit'],
  traces: ['traceId'],
  serviceGraph: ['service'],
};

export const QUERY_TYPES: Array<{ value: QueryType; label: string; description: string }> = [
  { value: 'incidents', label: 'Incidents', description: 'A table of the incidents opened in the range' },
  { value: 'annotations', label: 'Annotations', description: 'Incidents as regions from opening to resolution' },
  { value: 'runbooks', label: 'Runbook runs', description: 'The runbook runs of the incidents in the range' },
  { value: 'anomalies', label: 'Anomalies', description: 'Anomaly scores, and the normal band at each anomaly' },
  { value: 'forecasts', label: 'Forecasts', description: 'Time to exhaustion with its bounds' },
  { value: 'logs', label: 'Logs', description: 'Log lines; their trace ids link to the traces' },
  { value: 'traces', label: 'Trace', description: 'One trace by its id' },
  { value: 'serviceGraph', label: 'Service graph', description: 'The calls between services, as a node graph' },
];
