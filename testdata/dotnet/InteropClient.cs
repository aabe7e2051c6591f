// InteropClient talks to a statebus service exactly as the XStateNet
// InterProcessClient does: a NamedPipeClientStream, a UTF-8 StreamWriter
// (which sends a BOM first) flushing every line, and a StreamReader.
//
// Usage: InteropClient.exe <pipeName> <myId> <goId>
//
// It registers and subscribes as myId, sends PING to goId and prints the
// PONG line it gets back to stdout, then sends an event to a machine that
// does not exist and prints the error line to stdout. Every line received
// is echoed to stderr. Exit code 0 on success, 1 on failure, 2 on timeout.
using System;
using System.IO;
using System.IO.Pipes;
using System.Text;
using System.Threading;

static class InteropClient
{
    static int Main(string[] args)
    {
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: InteropClient.exe <pipeName> <myId> <goId>");
            return 1;
        }
        int code = 2;
        var worker = new Thread(() => code = Run(args[0], args[1], args[2])) { IsBackground = true };
        worker.Start();
        if (!worker.Join(10000))
        {
            Console.Error.WriteLine("FAIL: timed out after 10 s");
            return 2;
        }
        return code;
    }

    static int Run(string pipeName, string myId, string goId)
    {
        try
        {
            using (var pipe = new NamedPipeClientStream(".", pipeName, PipeDirection.InOut, PipeOptions.Asynchronous))
            {
                try
                {
                    pipe.Connect(5000);
                }
                catch (TimeoutException)
                {
                    throw new Exception("Failed to connect to pipe '" + pipeName +
                        "' within 5 seconds. Is the InterProcess Service running?");
                }
                var writer = new StreamWriter(pipe, Encoding.UTF8) { AutoFlush = true };
                var reader = new StreamReader(pipe, Encoding.UTF8);

                writer.WriteLine("{\"Type\":0,\"Payload\":{\"MachineId\":" + Str(myId) +
                    ",\"ProcessName\":\"InteropClient\",\"ProcessId\":" +
                    System.Diagnostics.Process.GetCurrentProcess().Id +
                    ",\"RegisteredAt\":" + Now() + "}}");
                ReadUntil(reader, "RegisteredAt");

                writer.WriteLine("{\"Type\":3,\"Payload\":" + Str(myId) + "}");
                ReadUntil(reader, "SubscribedAt");

                writer.WriteLine(SendEvent(myId, goId, "PING", "{\"Message\":\"Hello from .NET\"}"));
                Console.WriteLine(ReadUntil(reader, "\"EventName\":\"PONG\""));

                writer.WriteLine(SendEvent(myId, "no-such-machine", "PING", "null"));
                string err = ReadUntil(reader, "\"Success\":false");
                if (!err.Contains("Target machine not connected: "))
                    throw new Exception("unexpected error line: " + err);
                Console.WriteLine(err);
                return 0;
            }
        }
        catch (Exception e) when (!(e is ThreadAbortException))
        {
            Console.Error.WriteLine("FAIL: " + e.Message);
            return 1;
        }
    }

    static string SendEvent(string source, string target, string name, string payload)
    {
        return "{\"Type\":2,\"Payload\":{\"SourceMachineId\":" + Str(source) +
            ",\"TargetMachineId\":" + Str(target) + ",\"EventName\":" + Str(name) +
            ",\"Payload\":" + payload + ",\"Timestamp\":" + Now() + "}}";
    }

    // ReadUntil returns the first line containing text, echoing every line
    // to stderr. The service closing the connection is a failure.
    static string ReadUntil(StreamReader reader, string text)
    {
        for (;;)
        {
            string line = reader.ReadLine();
            if (line == null)
                throw new Exception("connection closed while waiting for " + text);
            Console.Error.WriteLine("received: " + line);
            if (line.Contains(text))
                return line;
        }
    }

    static string Now()
    {
        return "\"" + DateTime.UtcNow.ToString("o") + "\"";
    }

    // Str quotes s as a JSON string.
    static string Str(string s)
    {
        var b = new StringBuilder("\"");
        foreach (char c in s)
        {
            if (c == '"' || c == '\\') b.Append('\\').Append(c);
            else if (c < ' ') b.AppendFormat("\\u{0:x4}", (int)c);
            else b.Append(c);
        }
        return b.Append('"').ToString();
    }
}
