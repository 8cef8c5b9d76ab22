import React from 'react';
import { DataSourceSettings } from '@grafana/data';
import { fireEvent, render, screen } from '@testing-library/react';

import { AiopsOptions, AiopsSecureOptions } from '../types';
import { ConfigEditor, urlProblem } from './ConfigEditor';

type Options = DataSourceSettings<AiopsOptions, AiopsSecureOptions>;

function settings(overrides: Partial<Options> = {}): Options {
  return {
    id: 1,
    uid: 'aiops-uid',
    orgId: 1,
    name: 'aiops',
    type: 'aiops-aiops-datasource',
    typeName: 'aiops',
    typeLogoUrl: '',
    access: 'proxy',
    url: 'http://aiops:9090',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    jsonData: {},
    secureJsonFields: {},
    readOnly: false,
    withCredentials: false,
    ...overrides,
  };
}

describe('ConfigEditor', () => {
  it('writes the URL and the timeout', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings({ jsonData: { timeoutSeconds: 30 } })} onOptionsChange={onOptionsChange} />);

    fireEvent.change(screen.getByLabelText('URL'), { target: { value: 'https://aiops.example:9443' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ url: 'https://aiops.example:9443' }));

    fireEvent.change(screen.getByLabelText('Timeout in seconds'), { target: { value: '45' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ jsonData: { timeoutSeconds: 45 } }));

    fireEvent.change(screen.getByLabelText('Timeout in seconds'), { target: { value: '' } });
    expect(onOptionsChange).toHaveBeenLastCalledWith(expect.objectContaining({ jsonData: { timeoutSeconds: undefined } }));
  });

  it('keeps a new token in secureJsonData only', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings()} onOptionsChange={onOptionsChange} />);

    fireEvent.change(screen.getByLabelText('Token'), { target: { value: 's3cret' } });
    const next: Options = onOptionsChange.mock.lastCall[0];
    expect(next.secureJsonData).toEqual({ token: 's3cret' });
    expect(JSON.stringify(next.jsonData)).not.toContain('s3cret');
  });

  it('shows a saved token as configured, and resets it', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={settings({ secureJsonFields: { token: true } })} onOptionsChange={onOptionsChange} />);

    const token = screen.getByLabelText('Token');
    expect(token).toBeDisabled();
    expect(token).toHaveValue('configured');

    fireEvent.click(screen.getByRole('button', { name: 'Reset' }));
    expect(onOptionsChange).toHaveBeenLastCalledWith(
      expect.objectContaining({ secureJsonFields: { token: false }, secureJsonData: { token: '' } })
    );
  });

  it('says what is wrong with a URL', () => {
    render(<ConfigEditor options={settings({ url: 'aiops:9090' })} onOptionsChange={jest.fn()} />);
    expect(screen.getByText('aiops:9090 is not an http(s) URL with a host')).toBeInTheDocument();
  });
});

describe('urlProblem', () => {
  it.each([
    ['http://aiops:9090', undefined],
    ['https://aiops.example/', undefined],
    ['', 'Set the URL of aiops, e.g. http://aiops:9090'],
    ['ftp://aiops', 'ftp://aiops is not an http(s) URL with a host'],
    ['not a url', 'not a url is not an http(s) URL with a host'],
  ])('%s', (raw, want) => {
    expect(urlProblem(raw)).toBe(want);
  });
});
