import React from 'react';
import { setBackendSrv } from '@grafana/runtime';
import { fireEvent, render, screen } from '@testing-library/react';

import { DataSource } from '../datasource';
import { FakeBackend, instanceSettings } from '../testing';
import { AiopsQuery, QueryType } from '../types';
import { QueryEditor } from './QueryEditor';

// The Combobox's list is virtualized: it shows the options that fit in
// its size, and jsdom lays nothing out, so every element gets a size.
beforeAll(() => {
  jest.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockReturnValue(400);
  jest.spyOn(HTMLElement.prototype, 'clientWidth', 'get').mockReturnValue(400);
});

const resources = '/api/datasources/uid/aiops-uid/resources/';

function setup(query: AiopsQuery) {
  const backend = new FakeBackend();
  backend.answers[resources + 'services'] = ['api', 'checkout'];
  backend.answers[resources + 'runbooks'] = ['restart-api', 'scale-workers'];
  backend.answers[resources + 'labels'] = ['aiops_metric', 'service_name'];
  backend.answers[resources + 'label-values'] = ['http_server_request_duration_seconds'];
  setBackendSrv(backend.srv());
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  const datasource = new DataSource(instanceSettings());
  const view = render(<QueryEditor query={query} datasource={datasource} onChange={onChange} onRunQuery={onRunQuery} />);
  return { backend, onChange, onRunQuery, view };
}

// The editor's fields by their labels, and the query field each writes.
const LABELS: Record<string, string> = {
  service: 'Service',
  status: 'Status',
  severity: 'Severity',
  runbook: 'Runbook',
  selector: 'Selector',
  minScore: 'Min score',
  minSeverity: 'Min severity',
  contains: 'Contains',
  regexp: 'Regexp',
  traceId: 'Trace ID',
  limit: 'Limit',
};

// What the backend reads for each query type (plugin/pkg/plugin/queries.go).
const FIELDS: Array<[QueryType, string[]]> = [
  ['incidents', ['service', 'status', 'severity', 'limit']],
  ['annotations', ['service', 'status', 'severity', 'limit']],
  ['runbooks', ['service', 'status', 'severity', 'runbook', 'limit']],
  ['anomalies', ['selector', 'service', 'minScore', 'limit']],
  ['forecasts', ['selector', 'service']],
  ['logs', ['service', 'minSeverity', 'contains', 'regexp', 'traceId', 'limit']],
  ['traces', ['traceId']],
  ['serviceGraph', ['service']],
];

async function choose(label: string, option: string) {
  fireEvent.click(screen.getByLabelText(label));
  fireEvent.click(await screen.findByRole('option', { name: option }));
}

describe('QueryEditor', () => {
  it('opens on incidents', () => {
    setup({ refId: 'A' });
    expect(screen.getByRole('radio', { name: 'Incidents' })).toBeChecked();
    expect(screen.getByLabelText('Status')).toBeInTheDocument();
  });

  it.each(FIELDS)('shows the fields of %s and no others', (queryType, fields) => {
    setup({ refId: 'A', queryType });
    for (const [field, label] of Object.entries(LABELS)) {
      if (fields.includes(field)) {
        expect(screen.getByLabelText(label)).toBeInTheDocument();
      } else {
        expect(screen.queryByLabelText(label)).not.toBeInTheDocument();
      }
    }
  });

  it('switches the query type and runs the query', () => {
    const { onChange, onRunQuery } = setup({ refId: 'A', queryType: 'incidents', service: 'api' });
    fireEvent.click(screen.getByRole('radio', { name: 'Logs' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'logs', service: 'api' });
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('offers the services aiops knows', async () => {
    const { backend, onChange, onRunQuery } = setup({ refId: 'A', queryType: 'serviceGraph' });
    await choose('Service', 'checkout');
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'serviceGraph', service: 'checkout' });
    expect(onRunQuery).toHaveBeenCalled();
    expect(backend.requests.map((r) => r.url)).toContain(resources + 'services');
  });

  it('offers the runbooks that ran', async () => {
    const { onChange } = setup({ refId: 'A', queryType: 'runbooks' });
    await choose('Runbook', 'scale-workers');
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'runbooks', runbook: 'scale-workers' });
  });

  it('picks a status and a log severity from their lists', async () => {
    const { onChange, view } = setup({ refId: 'A', queryType: 'incidents' });
    await choose('Status', 'acknowledged');
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'incidents', status: 'acknowledged' });
    view.unmount();

    const logs = setup({ refId: 'B', queryType: 'logs' });
    await choose('Min severity', 'warn');
    expect(logs.onChange).toHaveBeenLastCalledWith({ refId: 'B', queryType: 'logs', minSeverity: 'warn' });
  });

  it('builds a selector from a label and one of its values', async () => {
    const { backend, onChange, onRunQuery } = setup({ refId: 'A', queryType: 'anomalies', selector: '{service_name="api"}' });
    expect(screen.getByLabelText('Label value')).toBeDisabled();
    await choose('Label', 'aiops_metric');
    await choose('Label value', 'http_server_request_duration_seconds');
    expect(onChange).toHaveBeenLastCalledWith({
      refId: 'A',
      queryType: 'anomalies',
      selector: '{service_name="api", aiops_metric="http_server_request_duration_seconds"}',
    });
    expect(onRunQuery).toHaveBeenCalled();
    expect(backend.requests.find((r) => r.url.endsWith('label-values'))?.params).toEqual({ label: 'aiops_metric' });
  });

  it('writes typed fields and runs the query when one is left', () => {
    const { onChange, onRunQuery } = setup({ refId: 'A', queryType: 'logs' });
    fireEvent.change(screen.getByLabelText('Contains'), { target: { value: 'timeout' } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'logs', contains: 'timeout' });
    fireEvent.change(screen.getByLabelText('Limit'), { target: { value: '50' } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'logs', limit: 50 });
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.blur(screen.getByLabelText('Limit'));
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('says when a trace id is not one', () => {
    const { view } = setup({ refId: 'A', queryType: 'traces', traceId: 'not-hex' });
    expect(screen.getByText('A trace id is 1 to 32 hex digits')).toBeInTheDocument();
    view.unmount();
    setup({ refId: 'A', queryType: 'traces', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect(screen.queryByText('A trace id is 1 to 32 hex digits')).not.toBeInTheDocument();
  });

  it('leaves a list empty when its look-up fails, and still takes a typed value', async () => {
    const { backend, onChange } = setup({ refId: 'A', queryType: 'incidents' });
    delete backend.answers[resources + 'services'];
    const input = screen.getByLabelText('Service');
    fireEvent.click(input);
    fireEvent.change(input, { target: { value: 'billing' } });
    fireEvent.click(await screen.findByRole('option', { name: /billing/ }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'incidents', service: 'billing' });
    expect(screen.queryByRole('option', { name: 'checkout' })).not.toBeInTheDocument();
  });
});
