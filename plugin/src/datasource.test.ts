import { CoreApp, dateTime, DataQueryRequest, ScopedVars } from '@grafana/data';
import { setBackendSrv, setTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { lastValueFrom } from 'rxjs';

import { DataSource } from './datasource';
import { FakeBackend, instanceSettings } from './testing';
import { AiopsQuery } from './types';

// Template variables: $service is "api", ${svc} is "db".
const templates = {
  replace: (s: string, scoped?: ScopedVars) =>
    s.replace(/\$service\b/g, 'api').replace(/\$\{svc\}/g, String(scoped?.svc?.value ?? 'db')),
} as unknown as TemplateSrv;

const resources = '/api/datasources/uid/aiops-uid/resources/';

describe('DataSource', () => {
  let backend: FakeBackend;
  let ds: DataSource;

  beforeEach(() => {
    backend = new FakeBackend();
    setBackendSrv(backend.srv());
    setTemplateSrv(templates);
    ds = new DataSource(instanceSettings());
  });

  it('reads the look-ups from the backend resources', async () => {
    backend.answers[resources + 'services'] = ['api', 'db'];
    backend.answers[resources + 'labels'] = ['aiops_metric', 'service_name'];
    backend.answers[resources + 'label-values'] = ['http_server_request_duration_seconds'];
    backend.answers[resources + 'runbooks'] = ['restart-api'];

    await expect(ds.services()).resolves.toEqual(['api', 'db']);
    await expect(ds.labels()).resolves.toEqual(['aiops_metric', 'service_name']);
    await expect(ds.labelValues('aiops_metric')).resolves.toEqual(['http_server_request_duration_seconds']);
    await expect(ds.runbooks()).resolves.toEqual(['restart-api']);
    expect(backend.requests.find((r) => r.url.endsWith('label-values'))?.params).toEqual({ label: 'aiops_metric' });
  });

  it('answers variable queries from the look-ups', async () => {
    backend.answers[resources + 'services'] = ['api', 'db'];
    backend.answers[resources + 'runbooks'] = ['restart-api'];
    backend.answers[resources + 'labels'] = ['aiops_metric'];
    backend.answers[resources + 'label-values'] = ['cpu', 'memory'];

    await expect(ds.metricFindQuery('services()')).resolves.toEqual([
      { text: 'api', value: 'api' },
      { text: 'db', value: 'db' },
    ]);
    await expect(ds.metricFindQuery(' runbooks( ) ')).resolves.toEqual([{ text: 'restart-api', value: 'restart-api' }]);
    await expect(ds.metricFindQuery('labels()')).resolves.toEqual([{ text: 'aiops_metric', value: 'aiops_metric' }]);
    await expect(ds.metricFindQuery('label_values(aiops_metric)')).resolves.toHaveLength(2);
    expect(backend.requests.at(-1)?.params).toEqual({ label: 'aiops_metric' });

    // Variables in the query are substituted first: $service is "api".
    await ds.metricFindQuery('label_values($service)');
    expect(backend.requests.at(-1)?.params).toEqual({ label: 'api' });

    await expect(ds.metricFindQuery('services')).rejects.toThrow('unknown variable query "services"');
    await expect(ds.metricFindQuery('label_values(a b)')).rejects.toThrow('label_values(LABEL)');
  });

  it('answers an empty list for an answer that is not a list of strings', async () => {
    backend.answers[resources + 'services'] = { error: 'odd' };
    await expect(ds.services()).resolves.toEqual([]);
    backend.answers[resources + 'services'] = ['api', 3, null];
    await expect(ds.services()).resolves.toEqual(['api']);
  });

  it('passes a failed look-up on', async () => {
    await expect(ds.runbooks()).rejects.toMatchObject({ status: 404 });
  });

  it('substitutes template variables in every text field', () => {
    const q: AiopsQuery = {
      refId: 'A',
      queryType: 'logs',
      service: '$service',
      contains: 'from ${svc}',
      selector: '{service_name="$service"}',
      limit: 10,
    };
    expect(ds.applyTemplateVariables(q, { svc: { text: 'x', value: 'worker' } })).toEqual({
      refId: 'A',
      queryType: 'logs',
      service: 'api',
      contains: 'from worker',
      selector: '{service_name="api"}',
      limit: 10,
    });
  });

  // Grafana's query runners apply filterQuery before they call query.
  it('leaves out hidden queries and trace queries without an id', () => {
    expect(ds.filterQuery({ refId: 'A', queryType: 'incidents' })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', queryType: 'incidents', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'traces', traceId: ' ' })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', queryType: 'traces', traceId: 'abc' })).toBe(true);
  });

  it('sends the queries to the backend with the variables substituted', async () => {
    const range = { from: dateTime(0), to: dateTime(3600_000), raw: { from: 'now-1h', to: 'now' } };
    const req = {
      requestId: 'r',
      interval: '1m',
      intervalMs: 60_000,
      range,
      scopedVars: {},
      timezone: 'utc',
      app: CoreApp.Dashboard,
      startTime: 0,
      targets: [
        { refId: 'A', queryType: 'incidents', service: '$service' },
        { refId: 'B', queryType: 'logs', contains: '${svc}', minSeverity: 'warn' },
      ],
    } as unknown as DataQueryRequest<AiopsQuery>;

    await lastValueFrom(ds.query(req));

    const posts = backend.posts();
    expect(posts).toHaveLength(1);
    expect(posts[0].url.split('?')[0]).toBe('/api/ds/query');
    const body = posts[0].data as { queries: Array<Record<string, unknown>> };
    expect(body.queries).toHaveLength(2);
    expect(body.queries[0]).toMatchObject({
      refId: 'A',
      queryType: 'incidents',
      service: 'api',
      datasource: { uid: 'aiops-uid', type: 'aiops-aiops-datasource' },
    });
    expect(body.queries[1]).toMatchObject({ refId: 'B', queryType: 'logs', contains: 'db', minSeverity: 'warn' });
  });

  it('asks for logs in Explore and incidents elsewhere, and incidents as annotations', () => {
    expect(ds.getDefaultQuery(CoreApp.Explore)).toEqual({ queryType: 'logs' });
    expect(ds.getDefaultQuery(CoreApp.Dashboard)).toEqual({ queryType: 'incidents' });
    expect(ds.annotations?.getDefaultQuery?.()).toEqual({ queryType: 'annotations' });
  });
});
